"""Granting offers: one batch and one CREDIT per offer item, in a constant number of statements.

``grant_lines`` is the batched primitive behind ``TransactionService.grant_offer``,
``grant_many`` and ``exchange``: whatever the number of offers and items it runs one query for
the offer items (with their products) — for order lines carrying a snapshot, one for the
snapshot's products instead —, one for the user (locked: it serialises with period chains and
customer merges), at most one aggregate for running periods, one ``INSERT`` for the batches
and one for the ledger rows. Period ends are clamped to ``periods.FAR_FUTURE``, so a grant
never fails on dates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import Max

from billable.exceptions import OfferNotFound, UserNotFound
from billable.ledger.audit import emit_created
from billable.ledger.locks import lock_users
from billable.ledger.periods import bounded_end, extends
from billable.ledger.snapshots import has_snapshot, line_items
from billable.models import Offer, OfferItem, OrderItem, QuotaBatch, Transaction
from billable.models.base import uuid7
from billable.validation import offer_pk as pk_of_offer

CREDIT = Transaction.Direction.CREDIT

Grant = tuple[Any, "OrderItem | None"]


def _items_by_offer(offer_pks: set[Any]) -> dict[Any, list[OfferItem]]:
    grouped: dict[Any, list[OfferItem]] = defaultdict(list)
    if not offer_pks:
        return grouped
    items = OfferItem.objects.filter(offer_id__in=offer_pks).select_related("product")
    for item in items.order_by("offer_id", "id"):
        grouped[item.offer_id].append(item)
    return grouped


def _check_user(user_id: Any, *, lock: bool) -> None:
    if lock:
        found = bool(lock_users([user_id]))
    else:
        found = get_user_model().objects.filter(pk=user_id).exists()
    if not found:
        raise UserNotFound(f"User {user_id} not found")


def _running_ends(user_id: Any, product_ids: set[Any], now: datetime) -> dict[Any, datetime]:
    if not product_ids:
        return {}
    rows = (QuotaBatch.objects.filter(user_id=user_id, product_id__in=product_ids,
                                      state=QuotaBatch.State.ACTIVE, expires_at__gt=now)
            .order_by().values("product_id").annotate(end=Max("expires_at"))
            .values_list("product_id", "end"))
    return dict(rows)


def _plan(grants: Sequence[tuple[Any, OrderItem | None]], items: dict[Any, list[Any]],
          snapshots: dict[Any, list[Any]], ends: dict[Any, datetime], *, user_id: Any,
          now: datetime) -> Iterator[QuotaBatch]:
    for offer_pk, order_item in grants:
        multiplier = order_item.quantity if order_item is not None else 1
        line: list[Any] = (snapshots[order_item.pk] if has_snapshot(order_item)
                           else items.get(offer_pk, []))
        for item in line:
            start, span = now, item.period_value
            if extends(item):
                start = max(now, ends.get(item.product_id, now))
                span = (item.period_value or 0) * multiplier
            expires = bounded_end(start, item.period_unit, span)
            if extends(item) and expires is not None:
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


def grant_lines(*, user_id: Any, grants: Sequence[Grant], source: str, metadata: dict[str, Any],
                now: datetime, user_locked: bool = False) -> list[QuotaBatch]:
    """Create the batches and CREDIT rows for every ``(offer, order_item)``; run in ``atomic``.

    ``offer`` is an :class:`Offer` or its primary key. An order line with a snapshot grants its
    snapshot; anything else grants the offer's current items. An unknown offer raises
    :class:`OfferNotFound` and an unknown user :class:`UserNotFound` before anything is
    written. ``user_locked`` says the caller already holds the account lock.
    """
    resolved = [(pk_of_offer(offer), order_item) for offer, order_item in grants]
    snapshots = line_items([line for _, line in resolved if has_snapshot(line)])
    live = {pk for pk, line in resolved if not has_snapshot(line)}
    items = _items_by_offer(live)
    unknown = [pk for pk in live if pk not in items]
    if unknown and Offer.objects.filter(pk__in=unknown).count() != len(set(unknown)):
        raise OfferNotFound("Offer not found")
    every: list[Any] = [*(i for lst in items.values() for i in lst),
                        *(i for lst in snapshots.values() for i in lst)]
    extendable = {i.product_id for i in every if extends(i)}
    if not user_locked:
        # Always the account lock (the same one statement as an existence check): a grant is
        # then serialised with a customer merge of the account, which holds it while it moves
        # the batches and their ledger rows. Unlocked, a grant that committed between the
        # merge's two moves left its batch on the emptied account and its CREDIT row on the
        # target (a ledger row on another user's batch), or its units behind on the emptied
        # account. Period grants needed it anyway, to chain.
        _check_user(user_id, lock=True)
    ends = _running_ends(user_id, extendable, now)
    batches = list(_plan(resolved, items, snapshots, ends, user_id=user_id, now=now))
    if not batches:
        return []
    QuotaBatch.objects.bulk_create(batches)
    rows = _credit_rows(batches, source=source, metadata=metadata)
    Transaction.objects.bulk_create(rows)
    emit_created(rows)
    return batches


__all__ = ["grant_lines"]
