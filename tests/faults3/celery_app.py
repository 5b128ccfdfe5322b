"""The Celery app of the Celery fault test, as a host with RabbitMQ would write it.

``task_acks_late`` + ``task_reject_on_worker_lost``: the broker keeps a task until it finished,
so a worker killed mid-task hands it to the next worker — the "run twice" the jobs promise to
be safe for (docs/operations.md). Broker URL and queue come from the environment, so the test
and its worker process build the same app.
"""

from __future__ import annotations

import os

from celery import Celery


def make_app() -> Celery:
    app = Celery("faults3", broker=os.environ["FAULTS3_BROKER_URL"],
                 include=["billable.tasks", "bot_kit.tasks"])
    app.conf.update(
        task_default_queue=os.environ["FAULTS3_QUEUE"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


if os.environ.get("FAULTS3_CELERY_WORKER") == "1":
    import django

    django.setup()
    app = make_app()
