"""Celery tasks for billable's jobs, and their beat schedule (``pip install billable[celery]``).

The management commands stay the one implementation: each task runs its command with
``call_command`` and returns what the command printed; a command that fails (``CommandError``,
e.g. a ledger violation) fails the task, so Celery's error reporting is the alert. The tasks are
shared tasks: they join whichever Celery app the host configures (its
``autodiscover_tasks()`` imports this module).

One :class:`Job` is one line: its task name, its command, how often beat sends it, and the
command's options. bot_kit's jobs (refund outbox, Stars reconciliation) are in
:mod:`bot_kit.tasks`; the host merges the schedules::

    app.conf.beat_schedule = {**billable.tasks.beat_schedule(), **bot_kit.tasks.beat_schedule()}

``docs/operations.md`` shows the same jobs for django-q2 and cron.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from celery import shared_task
from celery.schedules import crontab
from django.core.management import call_command


@dataclass(frozen=True)
class Job:
    """A management command run as a Celery task ``name`` every ``every`` (seconds or a
    ``crontab``), with ``options`` as the command's keyword options."""

    name: str
    command: str
    every: float | crontab
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def stale_after(self) -> float | None:
        """Seconds after which an unstarted run is dropped (the next one is coming)."""
        return float(self.every) * 0.9 if isinstance(self.every, (int, float)) else None


def run_command(command: str, **options: Any) -> str:
    """Run a management command; return its stdout (stderr, its progress, is not kept)."""
    out = StringIO()
    call_command(command, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def command_task(job: Job) -> Any:
    """The Celery task of ``job``: ``task.delay(**options)`` overrides the job's options."""

    def run(**options: Any) -> str:
        return run_command(job.command, **{**job.options, **options})

    run.__name__ = run.__qualname__ = job.name.rpartition(".")[2]
    run.__doc__ = f"Run ``manage.py {job.command}`` (see :mod:`billable.tasks`)."
    return shared_task(name=job.name)(run)


def schedule_of(jobs: Iterable[Job]) -> dict[str, dict[str, Any]]:
    """Celery beat entries for ``jobs``."""
    entries = {}
    for job in jobs:
        options = {"expires": job.stale_after} if job.stale_after else {}
        entries[job.name] = {"task": job.name, "schedule": job.every, "options": options}
    return entries


#: billable's jobs. Add a job with one line here (or in your own module with ``Job``).
JOBS: list[Job] = [
    Job("billable.expire", "billable_expire", every=60.0),
    Job("billable.check_ledger", "billable_check_ledger", every=crontab(hour=3, minute=30)),
    Job("billable.deliver_events", "billable_deliver_events", every=10.0),
    Job("billable.alerts", "billable_alerts", every=3600.0),
    Job("billable.growth_sweep", "billable_growth_sweep", every=300.0),
]

TASKS = {job.name: command_task(job) for job in JOBS}
expire = TASKS["billable.expire"]
check_ledger = TASKS["billable.check_ledger"]
deliver_events = TASKS["billable.deliver_events"]
alerts = TASKS["billable.alerts"]
growth_sweep = TASKS["billable.growth_sweep"]


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The beat schedule of :data:`JOBS` (``app.conf.beat_schedule``)."""
    return schedule_of(JOBS)


__all__ = ["JOBS", "TASKS", "Job", "alerts", "beat_schedule", "check_ledger", "command_task",
           "deliver_events", "expire", "growth_sweep", "run_command", "schedule_of"]
