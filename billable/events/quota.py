"""``quota.exhausted`` and ``quota.low``: what a consumption left of a product.

Evaluated once per consumption row, inside the consuming transaction, after every row of the
consumption is written. ``after`` is what is spendable now; ``before`` adds back every DEBIT of
the same change (same user, same timestamp, same product). ``quota.exhausted`` fires when
``after`` is 0; ``quota.low`` when ``before > threshold >= after > 0``. The dedupe key (user,
product, change timestamp) keeps one event of each kind per change, however many batches it
touched. Period and unlimited products never run out and produce neither.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Sum

from billable.conf import billable_settings
from billable.events.types import QUOTA_EXHAUSTED, QUOTA_LOW, Event
from billable.models import Product, QuotaBatch, Transaction


def low_threshold(product_key: str | None) -> int:
    """The ``quota.low`` threshold of a product (``BILLABLE_EVENTS_QUOTA_LOW``: an int for every
    product, or a dict of product key → int; 0 or missing: no ``quota.low``)."""
    setting = billable_settings.EVENTS_QUOTA_LOW
    if isinstance(setting, dict):
        return int(setting.get(product_key or "", 0) or 0)
    return int(setting or 0)


def events_after(usage: Any) -> list[Event]:
    """The quota events the consumption row ``usage`` completes (usually none)."""
    product = (Product.objects.filter(quota_batches__pk=usage.quota_batch_id)
               .only("pk", "product_key", "product_type").first())
    if product is None or product.is_entitlement:
        return []
    threshold = low_threshold(product.product_key)
    after = (QuotaBatch.objects.spendable().filter(user_id=usage.user_id, product_id=product.pk)
             .aggregate(total=Sum("remaining_quantity"))["total"] or 0)
    if after > threshold:
        return []
    spent = (Transaction.objects.filter(
        user_id=usage.user_id, created_at=usage.created_at, direction=Transaction.Direction.DEBIT,
        quota_batch__product_id=product.pk).aggregate(total=Sum("amount"))["total"] or 0)
    before = after + max(spent, usage.amount)
    stamp = f"{usage.user_id}:{product.pk}:{usage.created_at.isoformat()}"
    data = {"user_id": usage.user_id, "product_key": product.product_key,
            "remaining": after, "consumed": before - after, "usage_id": str(usage.pk)}
    if after == 0:
        return [Event(QUOTA_EXHAUSTED, str(usage.user_id), data, f"{QUOTA_EXHAUSTED}:{stamp}")]
    if before > threshold:
        return [Event(QUOTA_LOW, str(usage.user_id), {**data, "threshold": threshold},
                      f"{QUOTA_LOW}:{stamp}")]
    return []


__all__ = ["events_after", "low_threshold"]
