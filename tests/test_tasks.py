"""The Celery tasks wrap the management commands; the beat schedules name each task once.

The real worker process is exercised in ``tests/test_celery_worker.py`` (PostgreSQL + Redis);
here the tasks run in-process (``apply``), on any database.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery.schedules import crontab

from billable import tasks as billable_tasks
from bot_kit import tasks as bot_kit_tasks


def test_the_schedules_name_every_task_once() -> None:
    schedule = {**billable_tasks.beat_schedule(), **bot_kit_tasks.beat_schedule()}

    assert set(schedule) == {"billable.expire", "billable.check_ledger", "billable.alerts",
                             "billable.growth_sweep", "billable.deliver_events",
                             "bot_kit.refunds", "bot_kit.reconcile_stars", "bot_kit.notify",
                             "bot_kit.gift_refunds"}
    assert schedule["billable.deliver_events"]["schedule"] == 10.0
    assert {entry["task"] for entry in schedule.values()} == set(schedule)
    assert schedule["billable.expire"] == {"task": "billable.expire", "schedule": 60.0,
                                           "options": {"expires": 54.0}}
    assert isinstance(schedule["billable.check_ledger"]["schedule"], crontab)
    assert schedule["billable.check_ledger"]["options"] == {}


def test_adding_a_job_is_one_line() -> None:
    job = billable_tasks.Job("host.seed", "billable_seed_demo", every=3600.0)
    task = billable_tasks.command_task(job)
    assert task.name == "host.seed"
    assert billable_tasks.schedule_of([job]) == {
        "host.seed": {"task": "host.seed", "schedule": 3600.0, "options": {"expires": 3240.0}}}


@pytest.mark.django_db
def test_a_task_runs_its_command_and_returns_its_output(user: Any, make_product: Any) -> None:
    from tests.billable.ledger_support import make_batch

    make_batch(user, make_product("CREDITS"), 2, age_days=2, expires_in_days=-1)

    result = billable_tasks.expire.apply(kwargs={"user_id": str(user.pk)})

    assert result.get() == "Expired 1 batch. Released 0 expired holds.\n"


@pytest.mark.django_db
def test_a_failing_command_fails_the_task(user: Any, make_product: Any) -> None:
    from django.core.management import CommandError

    from billable.models import QuotaBatch
    from tests.billable.ledger_support import make_batch

    batch = make_batch(user, make_product("CREDITS"), 5)
    QuotaBatch.objects.filter(pk=batch.pk).update(remaining_quantity=4)

    result = billable_tasks.check_ledger.apply()

    assert result.failed()
    with pytest.raises(CommandError, match="1 violation"):
        result.get()
