"""Spending: ``consume`` (debit a product) and ``exchange`` (spend a currency, grant an offer).

Both run in one transaction: claim the idempotency key (if any), lock the spendable batches,
take the units with conditional updates, write one DEBIT per touched batch. A consumption
touching one batch costs four data statements (key INSERT, SELECT … FOR UPDATE, UPDATE, DEBIT
INSERT); without a key, three. Failures roll everything back, including the key, so a retry
after a top-up can succeed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billable.exceptions import (
    CurrencyError,
    EmptyOffer,
    IdempotencyConflict,
    InvalidPrice,
    OfferNotFound,
)
from billable.models import Offer, OfferItem, Product
from billable.models.base import uuid7
from billable.services import statements, wallet
from billable.services.grants import grant_lines
from billable.services.idempotency import claim_key
from billable.services.locks import lock_users
from billable.services.transient import retrying
from billable.services.validation import MAX_DB_ID, safe_text

ATTEMPTS = 3


def spendable_total(user_id: Any, key: str) -> int:
    """Sum of the user's spendable units of ``key`` (one query)."""
    found = statements.spendable_summary(user_id, key, timezone.now())
    return found[1] if found else 0


@retrying
def consume(user_id: Any, key: str, amount: int, *, action_type: str, action_id: str | None,
            idempotency_key: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """Debit ``amount`` of ``key``; return the success or documented failure dict."""
    usage_id = uuid7()
    debit_meta = {**metadata, "idempotency_key": idempotency_key}
    request = {"product_key": key, "amount": amount, "action_type": action_type,
               "action_id": action_id}
    for _attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                if idempotency_key:
                    earlier = claim_key(user_id, idempotency_key, operation="consume",
                                        request=request,
                                        result={"usage_id": str(usage_id), "metadata": debit_meta})
                    if earlier is not None:
                        return _replayed(user_id, key, earlier.result)
                return _spend(user_id, key, amount, usage_id=usage_id, action_type=action_type,
                              action_id=action_id, metadata=debit_meta)
        except wallet.Refusal as refusal:
            return refusal.result
        except IdempotencyConflict as conflict:
            return {"success": False, "error": conflict.code, "message": conflict.message}
        except wallet.StaleBatch:
            continue
    return wallet.insufficient_result()


def _replayed(user_id: Any, key: str, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": True,
        "message": "Quota was consumed previously (idempotent)",
        "usage_id": stored["usage_id"],
        "remaining": spendable_total(user_id, key),
        "metadata": stored.get("metadata", {}),
    }


def _spend(user_id: Any, key: str, amount: int, *, usage_id: Any, action_type: str,
           action_id: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    batches = wallet.lock_spendable(user_id, key, timezone.now())
    allocations = wallet.allocate(batches, key, amount)
    wallet.apply_allocations(allocations)
    if batches[0].is_entitlement:
        metadata = {**metadata, "requested_amount": amount}
    rows = wallet.debit_rows(user_id, [(a.batch.pk, a.take) for a in allocations],
                             action_type=action_type, metadata=metadata, first_id=usage_id,
                             object_id=action_id)
    wallet.emit_created(rows, consumed=True)
    return {"success": True, "message": "Quota consumed", "usage_id": str(usage_id),
            "remaining": wallet.remaining_after(batches), "metadata": metadata}


def resolve_active_offer(offer: Any = None, offer_id: Any = None) -> Offer:
    """The active offer named by an instance, a primary key or a SKU; else OfferNotFound."""
    if isinstance(offer, Offer):
        if offer.pk is None or not offer.is_active:
            raise OfferNotFound("Offer not found")
        return offer
    ref = offer if offer is not None else offer_id
    if ref is None or isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise OfferNotFound("Offer not found")
    active = Offer.objects.filter(is_active=True)
    text = safe_text(str(ref).strip(), field="offer_id")
    number = int(text) if text.isascii() and text.isdigit() else 0
    by_pk = active.filter(pk=number).first() if 0 < number <= MAX_DB_ID else None
    found = by_pk or (active.filter(sku=text).first() if text else None)
    if found is None:
        raise OfferNotFound("Offer not found")
    return found


def currency_product(code: str) -> Product:
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


def whole_price(price: Any, currency: str) -> int:
    """An exchange price as a positive whole number of currency units (never truncated)."""
    value = Decimal(str(price))
    if value <= 0 or value != value.to_integral_value():
        raise InvalidPrice(
            f"Exchange price must be a positive whole number of {currency} units, got {value}.")
    return int(value)


def require_items(offer: Offer) -> None:
    """Refuse an offer without items: selling it would take money and grant nothing."""
    if not OfferItem.objects.filter(offer_id=offer.pk).exists():
        raise EmptyOffer(f"Offer '{offer.sku}' has no items and cannot be sold.")


@retrying
def exchange(user_id: Any, offer: Offer, *, metadata: dict[str, Any],
             idempotency_key: str | None) -> dict[str, Any]:
    """Spend ``offer.price`` of its currency product and grant ``offer`` atomically.

    The account is locked first (the global lock order: accounts before keys and batches),
    because granting a period product extends the user's running access under that lock.
    """
    currency = currency_product(offer.currency)
    require_items(offer)
    key = str(currency.product_key)
    price = whole_price(offer.price, key)
    meta = {**metadata, "price": price}
    usage_id = uuid7()
    for _attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                user_locked = bool(lock_users([user_id]))
                if idempotency_key:
                    earlier = claim_key(
                        user_id, idempotency_key, operation="exchange",
                        request={"sku": offer.sku, "price": price, "currency": key},
                        result={"usage_id": str(usage_id), "metadata": meta})
                    if earlier is not None:
                        return {"success": True, "message": "Exchanged previously (idempotent)",
                                "metadata": earlier.result.get("metadata", meta)}
                return _swap(user_id, offer, key, price, meta=meta, usage_id=usage_id,
                             user_locked=user_locked)
        except wallet.Refusal as refusal:
            return refusal.result
        except wallet.StaleBatch:
            continue
    return wallet.insufficient_result()


def _swap(user_id: Any, offer: Offer, key: str, price: int, *, meta: dict[str, Any],
          usage_id: Any, user_locked: bool) -> dict[str, Any]:
    now = timezone.now()
    batches = wallet.lock_spendable(user_id, key, now)
    allocations = wallet.allocate(batches, key, price)
    wallet.apply_allocations(allocations)
    granted = grant_lines(user_id, [(offer, None)], source="exchange", metadata=meta, now=now,
                          user_locked=user_locked)
    debit_meta = {**meta, "offer_sku": offer.sku, "offer_id": offer.pk,
                  "batch_ids": [str(b.pk) for b in granted]}
    rows = wallet.debit_rows(user_id, [(a.batch.pk, a.take) for a in allocations],
                             action_type="exchange", metadata=debit_meta, first_id=usage_id,
                             related=offer)
    wallet.emit_created(rows, consumed=True)
    return {"success": True, "message": "Exchanged", "metadata": meta}


__all__ = ["consume", "currency_product", "exchange", "require_items", "resolve_active_offer",
           "spendable_total", "whole_price"]
