"""Granting offers: one batch and one CREDIT per offer item, in a constant number of statements.

``grant_lines`` is the batched primitive behind ``TransactionService.grant_offer``,
``grant_many`` and ``exchange``: whatever the number of offers and items it runs one query for
the offer items (with their products), one for the user (locked when period products are
involved), at most one aggregate for running periods, one ``INSERT`` for the batches and one for
the ledger rows.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db.models import Max

from billable.exceptions import InvalidInput, OfferNotFound, UserNotFound
from billable.models import Offer, OfferItem, OrderItem, Product, QuotaBatch, Transaction
from billable.models.base import uuid7
from billable.services.wallet import CREDIT, emit_created

Grant = tuple[Any, "OrderItem | None"]


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months; the day is clamped to the target month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, unit: str, value: int | None) -> datetime | None:
    """When a grant starting at ``start`` ends; ``None`` for ``forever`` or no value."""
    if unit == OfferItem.PeriodUnit.FOREVER or not value:
        return None
    if unit == OfferItem.PeriodUnit.HOURS:
        return start + timedelta(hours=value)
    if unit == OfferItem.PeriodUnit.DAYS:
        return start + timedelta(days=value)
    if unit == OfferItem.PeriodUnit.MONTHS:
        return add_months(start, value)
    if unit == OfferItem.PeriodUnit.YEARS:
        return add_months(start, 12 * value)
    raise InvalidInput(f"Unknown period unit: {unit!r}")


def _offer_pk(offer: Any) -> Any:
    if isinstance(offer, Offer):
        if offer.pk is None:
            raise OfferNotFound("Offer not found")
        return offer.pk
    if isinstance(offer, bool) or not isinstance(offer, (int, str)):
        raise OfferNotFound("Offer not found")
    pk_field = Offer._meta.pk
    assert pk_field is not None
    try:
        return pk_field.to_python(offer)
    except ValidationError as exc:
        raise OfferNotFound("Offer not found") from exc


def _items_by_offer(offer_pks: set[Any]) -> dict[Any, list[OfferItem]]:
    grouped: dict[Any, list[OfferItem]] = defaultdict(list)
    items = OfferItem.objects.filter(offer_id__in=offer_pks).select_related("product")
    for item in items.order_by("offer_id", "id"):
        grouped[item.offer_id].append(item)
    return grouped


def _is_extendable(item: OfferItem) -> bool:
    return (item.product.product_type == Product.ProductType.PERIOD
            and item.period_unit != OfferItem.PeriodUnit.FOREVER and bool(item.period_value))


def _check_user(user_id: Any, *, lock: bool) -> None:
    users = get_user_model().objects.filter(pk=user_id)
    if lock:
        users = users.select_for_update()
    if not list(users.values_list("pk", flat=True)):
        raise UserNotFound(f"User {user_id} not found")


def _running_ends(user_id: Any, product_ids: set[Any], now: datetime) -> dict[Any, datetime]:
    if not product_ids:
        return {}
    rows = (QuotaBatch.objects.filter(user_id=user_id, product_id__in=product_ids,
                                      state=QuotaBatch.State.ACTIVE, expires_at__gt=now)
            .order_by().values("product_id").annotate(end=Max("expires_at"))
            .values_list("product_id", "end"))
    return dict(rows)


def _plan(grants: Sequence[tuple[Any, OrderItem | None]], items: dict[Any, list[OfferItem]],
          ends: dict[Any, datetime], *, user_id: Any, now: datetime) -> Iterator[QuotaBatch]:
    for offer_pk, order_item in grants:
        multiplier = order_item.quantity if order_item is not None else 1
        for item in items.get(offer_pk, []):
            start, span = now, item.period_value
            if _is_extendable(item):
                start = max(now, ends.get(item.product_id, now))
                span = (item.period_value or 0) * multiplier
            expires = period_end(start, item.period_unit, span)
            if _is_extendable(item) and expires is not None:
                ends[item.product_id] = expires
            quantity = item.quantity * multiplier
            yield QuotaBatch(
                id=uuid7(), user_id=user_id, product=item.product, source_offer_id=offer_pk,
                order_item=order_item, initial_quantity=quantity, remaining_quantity=quantity,
                valid_from=start, expires_at=expires, created_at=now,
            )


def _credit_rows(batches: Sequence[QuotaBatch], *, source: str, metadata: dict[str, Any]
                 ) -> list[Transaction]:
    rows = []
    for batch in batches:
        model = OrderItem if batch.order_item is not None else Offer
        content_type = ContentType.objects.get_for_model(model)
        object_id = batch.order_item_id if batch.order_item is not None else batch.source_offer_id
        rows.append(Transaction(
            user_id=batch.user_id, quota_batch=batch, amount=batch.initial_quantity,
            direction=CREDIT, action_type=source, content_type=content_type,
            object_id=str(object_id), metadata=metadata, created_at=batch.created_at,
        ))
    return rows


def grant_lines(user_id: Any, grants: Sequence[Grant], *, source: str, metadata: dict[str, Any],
                now: datetime) -> list[QuotaBatch]:
    """Create the batches and CREDIT rows for every ``(offer, order_item)``; run in ``atomic``.

    ``offer`` is an :class:`Offer` or its primary key; an unknown offer raises
    :class:`OfferNotFound` and an unknown user :class:`UserNotFound` before anything is written.
    """
    resolved = [(_offer_pk(offer), order_item) for offer, order_item in grants]
    items = _items_by_offer({pk for pk, _ in resolved})
    unknown = [pk for pk, _ in resolved if pk not in items]
    if unknown and Offer.objects.filter(pk__in=unknown).count() != len(set(unknown)):
        raise OfferNotFound("Offer not found")
    extendable = {i.product_id for lst in items.values() for i in lst if _is_extendable(i)}
    _check_user(user_id, lock=bool(extendable))
    ends = _running_ends(user_id, extendable, now)
    batches = list(_plan(resolved, items, ends, user_id=user_id, now=now))
    if not batches:
        return []
    QuotaBatch.objects.bulk_create(batches)
    rows = _credit_rows(batches, source=source, metadata=metadata)
    Transaction.objects.bulk_create(rows)
    emit_created(rows)
    return batches


__all__ = ["add_months", "grant_lines", "period_end"]
