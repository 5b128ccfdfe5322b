"""Celery tasks for bot_kit's jobs (``pip install billable[celery]``); see :mod:`billable.tasks`.

* ``bot_kit.refunds`` — ``billable_refunds --limit 50``: one pass over the due rows of the refund
  outbox (every 30 s; skip it when a ``billable_refunds --loop`` worker runs).
* ``bot_kit.reconcile_stars`` — ``billable_reconcile_stars --days 3``: compare the recorded Stars
  payments with Telegram's (daily); a difference fails the task. Repairs stay a human decision
  (run ``billable_reconcile_stars --repair`` by hand, or ``reconcile_stars.delay(repair=True)``).

* ``bot_kit.notify`` — ``billable_notify``: the alert scan, then the alert messages (hourly).
* ``bot_kit.gift_refunds`` — ``billable_gift_refunds``: expire unclaimed gifts and queue their
  refunds (hourly).

All need ``TELEGRAM_BOT_TOKEN`` (and ``TELEGRAM_API_SERVER`` for a self-hosted Bot API) in the
worker's environment.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from billable.tasks import Job, command_task, schedule_of

#: bot_kit's jobs, one line each.
JOBS: list[Job] = [
    Job("bot_kit.refunds", "billable_refunds", every=30.0, options={"limit": 50}),
    Job("bot_kit.reconcile_stars", "billable_reconcile_stars",
        every=crontab(hour=4, minute=10), options={"days": 3}),
    Job("bot_kit.notify", "billable_notify", every=3600.0),
    Job("bot_kit.gift_refunds", "billable_gift_refunds", every=3600.0),
]

TASKS = {job.name: command_task(job) for job in JOBS}
refunds = TASKS["bot_kit.refunds"]
reconcile_stars = TASKS["bot_kit.reconcile_stars"]
notify = TASKS["bot_kit.notify"]
gift_refunds = TASKS["bot_kit.gift_refunds"]


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The beat schedule of :data:`JOBS`."""
    return schedule_of(JOBS)


__all__ = ["JOBS", "TASKS", "beat_schedule", "gift_refunds", "notify", "reconcile_stars",
           "refunds"]
