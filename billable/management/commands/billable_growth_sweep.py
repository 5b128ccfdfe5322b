"""``billable_growth_sweep``: tidy promo reservations and gifts (schedule it, e.g. every 5 min).

* settles reservations whose discounted order was paid, and gives back the uses of discounted
  orders that were cancelled or stayed unpaid past ``BILLABLE_PROMO_RESERVATION_TTL`` (those
  orders are cancelled);
* marks ready gifts past their expiry ``expired`` (``billable_gift_refunds`` of the bot kit
  refunds them through the refund outbox).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billable.growth.gifts import GiftService
from billable.growth.promo import PromoService
from billable.management.outages import outage_is_command_error


class Command(BaseCommand):
    help = "Release stale promo reservations and expire unclaimed gifts."

    @outage_is_command_error
    def handle(self, *args: Any, **options: Any) -> None:
        released = PromoService.release_stale()
        expired = GiftService.expire_gifts()
        self.stdout.write(f"Released promo uses: {released}. Expired gifts: {len(expired)}.")
