"""Spending: ``consume`` (debit a product) and ``exchange`` (spend a currency, grant an offer).

Both run in one transaction: claim the idempotency key (if any), lock the spendable batches,
take the units with conditional updates, write one DEBIT per touched batch. A consumption
touching one batch costs four data statements (key INSERT, SELECT … FOR UPDATE, UPDATE, DEBIT
INSERT); without a key, three. Failures roll everything back, including the key, so a retry
after a top-up can succeed.

On PostgreSQL a consume that owns its transaction first tries the single-batch path
(:func:`billable.ledger.sql.take_first`): when the first spendable batch in consumption order
covers the amount, the take and the DEBIT are one statement — in autocommit without outbound
events (one round trip; an idempotency key is claimed in the same statement,
:func:`billable.ledger.sql.take_first_keyed`), else after the key claim in one transaction. When it
does not apply, nothing was written and the general path above runs in a fresh transaction;
``tests/billable/test_ledger_first_lot.py`` holds both paths to the same rows, answers, errors
and signals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from billable.conf import billable_settings
from billable.exceptions import (
    CurrencyError,
    EmptyOffer,
    InsufficientFunds,
    InvalidPrice,
    OfferNotFound,
)
from billable.ledger import sql, wallet
from billable.ledger.audit import emit_created, writes_events
from billable.ledger.grants import grant_lines
from billable.ledger.idempotency import claim_key, consume_key_row, used_key
from billable.ledger.locks import lock_users
from billable.ledger.retry import retrying, until_fresh
from billable.ledger.sql import LedgerRow
from billable.models import Offer, OfferItem, Product
from billable.models.base import uuid7
from billable.validation import resolve_offer


def spendable_total(*, user_id: Any, key: str) -> int:
    """Sum of the user's spendable units of ``key`` (one query)."""
    found = sql.spendable_summary(user_id=user_id, key=key, now=timezone.now())
    return found[1] if found else 0


@retrying
def consume(*, user_id: Any, key: str, amount: int, action_type: str, action_id: str | None,
            idempotency_key: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """Debit ``amount`` of ``key``; return the success or documented failure dict."""
    usage_id = uuid7()
    debit_meta = {**metadata, "idempotency_key": idempotency_key}
    request = {"product_key": key, "amount": amount, "action_type": action_type,
               "action_id": action_id}

    def claimed() -> dict[str, Any] | None:
        """Claim the key (inside the step's transaction); the replayed answer if it was used."""
        if not idempotency_key:
            return None
        earlier = claim_key(user_id=user_id, key=idempotency_key, operation="consume",
                            request=request,
                            result={"usage_id": str(usage_id), "metadata": debit_meta})
        return None if earlier is None else _replayed(user_id, key, earlier.result)

    def first_lot(*, keyed: bool = False) -> dict[str, Any] | None:
        return _spend_first(user_id=user_id, key=key, amount=amount, usage_id=usage_id,
                            action_type=action_type, action_id=action_id, metadata=debit_meta,
                            idempotency_key=idempotency_key if keyed else None)

    def step() -> dict[str, Any]:
        if _first_lot():
            if not writes_events(consumed=True):
                # One statement in autocommit, the key (if any) claimed in it: its COMMIT
                # travels with it (one round trip). A replayed or conflicting key, or a consume
                # one batch cannot cover, wrote nothing: the general path below decides.
                done = first_lot(keyed=bool(idempotency_key))
                if done is not None:
                    return done
            else:
                # The key and the outbound events commit with the DEBIT. When the first batch
                # does not cover the amount, the whole transaction is rolled back (the key and
                # any row lock the attempt took go with it) and the general path runs afresh.
                try:
                    with transaction.atomic():
                        done = claimed() or first_lot()
                        if done is None:
                            raise _Fallback
                        return done
                except _Fallback:
                    pass
        with transaction.atomic():
            return claimed() or _spend(user_id=user_id, key=key, amount=amount,
                                       usage_id=usage_id, action_type=action_type,
                                       action_id=action_id, metadata=debit_meta)

    return until_fresh(step, give_up=lambda: _short(key))


class _Fallback(Exception):
    """The single-statement attempt wrote nothing: roll its transaction back."""


def _short(key: str) -> InsufficientFunds:
    return InsufficientFunds(wallet.INSUFFICIENT, product_key=key)


def _replayed(user_id: Any, key: str, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": True,
        "message": "Quota was consumed previously (idempotent)",
        "usage_id": stored["usage_id"],
        "remaining": spendable_total(user_id=user_id, key=key),
        "metadata": stored.get("metadata", {}),
    }


def _first_lot() -> bool:
    """Whether this consume may take the single-statement path: the backend has it and the
    consume owns its transaction. Inside a caller's transaction the general path runs,
    statement for statement as documented (the caller's transaction, not this one, then sets
    the cost, and its other row locks stay in the documented order)."""
    conn = connections[DEFAULT_DB_ALIAS]
    return conn.vendor in sql.FIRST_LOT_VENDORS and not conn.in_atomic_block


def _spend_first(*, user_id: Any, key: str, amount: int, usage_id: Any, action_type: str,
                 action_id: str | None, metadata: dict[str, Any],
                 idempotency_key: str | None = None) -> dict[str, Any] | None:
    """The single-batch path: the first spendable batch in consumption order covers ``amount``
    (one statement, :func:`billable.ledger.sql.take_first`; with ``idempotency_key`` the key
    is claimed in the same statement, :func:`billable.ledger.sql.take_first_keyed` — only in
    autocommit); ``None``: nothing was written and the general path (:func:`_spend`) decides,
    with the same rows and errors as ever."""
    now = timezone.now()
    row = LedgerRow(id=usage_id, user_id=user_id, quota_batch_id=None, amount=amount,
                    direction=wallet.DEBIT, action_type=action_type, content_type_id=None,
                    object_id=action_id, metadata=metadata, created_at=now)
    order = billable_settings.CONSUMPTION_ORDER
    if idempotency_key:
        key_row = consume_key_row(user_id=user_id, key=idempotency_key, product_key=key,
                                  amount=amount, action_type=action_type, action_id=action_id,
                                  usage_id=usage_id, metadata=metadata, now=now,
                                  using=DEFAULT_DB_ALIAS)
        found = sql.take_first_keyed(row=row, key=key, now=now, order=order, key_row=key_row)
    else:
        found = sql.take_first(row=row, key=key, now=now, order=order)
    if found is None:
        return None
    row.quota_batch_id, left = found
    emit_created([row], consumed=True)
    return {"success": True, "message": "Quota consumed", "usage_id": str(usage_id),
            "remaining": left, "metadata": metadata}


def _spend(*, user_id: Any, key: str, amount: int, usage_id: Any, action_type: str,
           action_id: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    batches = wallet.lock_spendable(user_id=user_id, key=key, now=timezone.now())
    allocations = wallet.allocate(batches=batches, key=key, amount=amount)
    wallet.apply_allocations(allocations)
    if batches[0].is_entitlement:
        metadata = {**metadata, "requested_amount": amount}
    parts = [(a.batch.pk, a.take) for a in allocations]
    rows = wallet.debit_rows(user_id=user_id, parts=parts, action_type=action_type,
                             metadata=metadata, first_id=usage_id, object_id=action_id)
    emit_created(rows, consumed=True)
    return {"success": True, "message": "Quota consumed", "usage_id": str(usage_id),
            "remaining": wallet.remaining_after(batches), "metadata": metadata}


def currency_product(*, code: str) -> Product:
    """The currency product named by an offer's ``currency`` (must exist, be active, be one)."""
    key = (code or "").strip().upper()
    product = Product.objects.filter(product_key=key).first() if key else None
    if product is None:
        raise CurrencyError(f"Currency product '{key}' not found.")
    if not product.is_currency:
        raise CurrencyError(f"Product '{key}' is not marked as a currency for exchange.")
    if product.is_entitlement:
        raise CurrencyError(f"Product '{key}' is a {product.product_type} product and cannot be "
                            "spent as a currency: only quantity products can.")
    if not product.is_active:
        raise CurrencyError(f"Currency product '{key}' is not active.")
    return product


def whole_price(*, price: Any, currency: str) -> int:
    """An exchange price as a positive whole number of currency units (never truncated)."""
    value = Decimal(str(price))
    if value <= 0 or value != value.to_integral_value():
        raise InvalidPrice(
            f"Exchange price must be a positive whole number of {currency} units, got {value}.")
    return int(value)


def require_items(*, offer: Offer) -> None:
    """Refuse an offer without items: selling it would take money and grant nothing."""
    if not OfferItem.objects.filter(offer_id=offer.pk).exists():
        raise EmptyOffer(f"Offer '{offer.sku}' has no items and cannot be sold.")


@retrying
def exchange(*, user_id: Any, offer: Offer, metadata: dict[str, Any],
             idempotency_key: str | None) -> dict[str, Any]:
    """Spend ``offer.price`` of its currency product and grant ``offer`` atomically.

    The account is locked first (the global lock order: accounts before keys and batches),
    because granting a period product extends the user's running access under that lock.
    An exchange the checks refuse (currency, price, items) under a key already used answers
    for the key instead (:func:`answer_used_key`): a conflict, or the replay of that request.
    """
    try:
        currency = currency_product(code=offer.currency)
        require_items(offer=offer)
        key = str(currency.product_key)
        price = whole_price(price=offer.price, currency=key)
    except (CurrencyError, EmptyOffer, InvalidPrice):
        replayed = answer_used_key(user_id=user_id, offer=offer, idempotency_key=idempotency_key)
        if replayed is None:
            raise
        return replayed
    meta = {**metadata, "price": price}
    usage_id = uuid7()

    def step() -> dict[str, Any]:
        with transaction.atomic():
            user_locked = bool(lock_users([user_id]))
            if idempotency_key:
                earlier = claim_key(
                    user_id=user_id, key=idempotency_key, operation="exchange",
                    request=_exchange_request(offer.sku, price, key),
                    result={"usage_id": str(usage_id), "metadata": meta})
                if earlier is not None:
                    return _exchange_replay(earlier.result)
            return _swap(user_id=user_id, offer=offer, key=key, price=price, meta=meta,
                         usage_id=usage_id, user_locked=user_locked)

    return until_fresh(step, give_up=lambda: _short(key))


def _exchange_request(sku: str, price: Any, currency: str) -> dict[str, Any]:
    """What an exchange's key is claimed for (its fingerprint): the offer, price, currency."""
    return {"sku": sku, "price": price, "currency": currency}


def _exchange_replay(stored: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "message": "Exchanged previously (idempotent)",
            "metadata": stored.get("metadata", {})}


def answer_used_key(*, user_id: Any, offer: Offer | None, idempotency_key: str | None
                    ) -> dict[str, Any] | None:
    """The answer of an exchange refused before its key was claimed, when the key says more.

    An unused key (or none) → ``None``: the refusal stands. A key used for another request →
    :class:`IdempotencyConflict` (409), whatever the refusal was: the conflict is the caller's
    bug either way. A key used for this same request (the offer, its price and currency
    unchanged, but the currency product or the offer retired since) → the stored answer of
    the exchange that did happen. Nothing is written either way; the one indexed read runs on
    this failure path only, so a valid exchange costs what it did. ``offer=None``: the caller
    named no offer that exists, so any earlier use of the key was for another request.
    """
    if not idempotency_key:
        return None
    request = None
    if offer is not None:
        value = Decimal(str(offer.price))
        whole = value.is_finite() and value == value.to_integral_value()
        request = _exchange_request(offer.sku, int(value) if whole else str(value),
                                    (offer.currency or "").strip().upper())
    earlier = used_key(user_id=user_id, key=idempotency_key, operation="exchange",
                       request=request)
    return None if earlier is None else _exchange_replay(earlier.result)


def answer_unknown_offer(*, user_id: Any, named: Any, idempotency_key: str | None
                         ) -> dict[str, Any] | None:
    """:func:`answer_used_key` for an exchange refused because ``named`` is no active offer: a
    retired offer is compared as it is now (the same request replays), a missing one as no
    request at all (any earlier use of the key conflicts)."""
    if not idempotency_key:
        return None
    try:
        offer: Offer | None = resolve_offer(named, include_inactive=True)
    except OfferNotFound:
        offer = None
    return answer_used_key(user_id=user_id, offer=offer, idempotency_key=idempotency_key)


def _swap(*, user_id: Any, offer: Offer, key: str, price: int, meta: dict[str, Any],
          usage_id: Any, user_locked: bool) -> dict[str, Any]:
    now = timezone.now()
    batches = wallet.lock_spendable(user_id=user_id, key=key, now=now)
    allocations = wallet.allocate(batches=batches, key=key, amount=price)
    wallet.apply_allocations(allocations)
    granted = grant_lines(user_id=user_id, grants=[(offer, None)], source="exchange",
                          metadata=meta, now=now, user_locked=user_locked)
    debit_meta = {**meta, "offer_sku": offer.sku, "offer_id": offer.pk,
                  "batch_ids": [str(b.pk) for b in granted]}
    parts = [(a.batch.pk, a.take) for a in allocations]
    rows = wallet.debit_rows(user_id=user_id, parts=parts, action_type="exchange",
                             metadata=debit_meta, first_id=usage_id, related=offer)
    emit_created(rows, consumed=True)
    return {"success": True, "message": "Exchanged", "metadata": meta}


__all__ = ["answer_unknown_offer", "answer_used_key", "consume", "currency_product", "exchange",
           "require_items", "spendable_total", "whole_price"]
