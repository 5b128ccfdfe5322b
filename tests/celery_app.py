"""The Celery app of the worker test (``tests/test_celery_worker.py``), as a host would write it.

Its broker, result backend, key prefix and queue come from the environment, so the test and its
worker process build the same app and no other Redis user is disturbed.
"""

from __future__ import annotations

import os

from celery import Celery


def make_app() -> Celery:
    """A Celery app with billable's and bot_kit's tasks, configured from ``CELERY_TEST_*``."""
    prefix = os.environ["CELERY_TEST_KEY_PREFIX"]
    app = Celery("billable_tests", broker=os.environ["CELERY_TEST_REDIS_URL"],
                 backend=os.environ["CELERY_TEST_REDIS_URL"],
                 include=["billable.tasks", "bot_kit.tasks"])
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        task_default_queue=os.environ["CELERY_TEST_QUEUE"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )
    return app


if os.environ.get("CELERY_TEST_WORKER") == "1":
    import django

    django.setup()
    app = make_app()
