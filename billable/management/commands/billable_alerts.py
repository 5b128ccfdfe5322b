"""``billable_alerts``: record new low-balance and expiry notices (schedule it, e.g. hourly).

Each new notice sends ``quota_low`` / ``batch_expiring`` after commit; the bot kit's
``billable_notify`` runs this scan and then messages the customers.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billable.growth.alerts import AlertService
from billable.management.outages import outage_is_command_error


class Command(BaseCommand):
    help = "Record new low-balance and expiry notices and send their signals."

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        result = AlertService.scan()
        self.stdout.write(f"Low balance: {result.low_balance}. Expiring: {result.expiring}.")
