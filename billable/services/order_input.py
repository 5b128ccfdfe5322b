"""Order input: parsing and checking what ``OrderService`` is asked to create or record.

Everything here runs before a transaction opens and raises a ``billable`` exception for input
that could never be honoured: malformed lines, unknown or inactive offers, offers without
items, quantities whose units or periods would not fit the ledger, mixed currencies, payment
fields and reasons the database cannot store.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from billable.exceptions import EmptyOffer, InvalidAmount, InvalidInput, OfferNotFound
from billable.ledger.periods import extends
from billable.models import Offer
from billable.models.catalog import MAX_PERIOD_YEARS, span_allowed
from billable.validation import positive_int, safe_text

#: ``payment_method`` recorded when the caller gives none.
DEFAULT_PAYMENT_METHOD = "manual"
#: Largest quantity of one order line (keeps granted units inside the ledger's integer range).
MAX_LINE_QUANTITY = 1_000_000
MAX_UNITS = 2_147_483_647
MAX_TOTAL = Decimal(10) ** 18  # Order.total_amount is Decimal(20, 2)
MAX_PAYMENT_ID = 255
MAX_PAYMENT_METHOD = 50


def line_quantity(item: Mapping[str, Any]) -> int:
    quantity = positive_int(item.get("quantity", 1), field="quantity")
    if quantity > MAX_LINE_QUANTITY:
        raise InvalidAmount(f"quantity must be at most {MAX_LINE_QUANTITY}", field="quantity")
    return quantity


def as_mapping(item: Any) -> Mapping[str, Any]:
    if hasattr(item, "model_dump"):
        item = item.model_dump()
    if not isinstance(item, Mapping):
        raise InvalidInput("Each item must be an object with 'sku' and 'quantity'")
    return item


def parse_lines(items: Any) -> list[tuple[str, str, int]]:
    """``(raw sku, normalised sku, quantity)`` per line; raises on malformed input."""
    if isinstance(items, (str, bytes, Mapping)) or not hasattr(items, "__iter__"):
        raise InvalidInput("items must be a list of {'sku', 'quantity'} objects")
    lines = []
    for raw_item in items:
        item = as_mapping(raw_item)
        sku = item.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise InvalidInput("Item must have 'sku'")
        safe_text(sku, field="sku")
        lines.append((sku, sku.strip().upper(), line_quantity(item)))
    if not lines:
        raise InvalidInput("Order must contain at least one item")
    return lines


def load_offers(lines: list[tuple[str, str, int]]) -> dict[str, Offer]:
    """Active offers by SKU with their items and products (three queries).

    Refuses what could never be honoured at payment: an unknown or inactive SKU
    (``OfferNotFound``), an offer without items (``EmptyOffer``), and a quantity whose units or
    period would not fit the ledger (``InvalidAmount``).
    """
    skus = {sku for _, sku, _ in lines}
    offers = {o.sku: o for o in Offer.objects.filter(sku__in=skus, is_active=True)
              .prefetch_related("items__product")}
    for raw, sku, quantity in lines:
        offer = offers.get(sku)
        if offer is None:
            raise OfferNotFound(f"Offer not found for sku: {raw!r}")
        check_line(offer, quantity)
    return offers


def check_line(offer: Offer, quantity: int) -> None:
    items = list(offer.items.all())
    if not items:
        raise EmptyOffer(f"Offer '{offer.sku}' has no items and cannot be sold.")
    if any(item.quantity * quantity > MAX_UNITS for item in items):
        raise InvalidAmount("Quantity too large for this offer", field="quantity")
    for item in items:
        span = item.period_value * quantity if extends(item) and item.period_value else None
        if not span_allowed(item.period_unit, span or item.period_value):
            raise InvalidAmount(
                f"Quantity too large for this offer: the period would last more than "
                f"{MAX_PERIOD_YEARS} years", field="quantity")


def order_currency(offers: list[Offer]) -> str:
    currencies = {offer.currency for offer in offers}
    if len(currencies) > 1:
        raise InvalidInput(
            "All items of an order must use the same currency (got "
            + ", ".join(sorted(currencies)) + ")"
        )
    return currencies.pop()


def payment_fields(payment_id: Any, payment_method: Any) -> tuple[str | None, str]:
    if payment_id is not None:
        if isinstance(payment_id, bool) or not isinstance(payment_id, (str, int)):
            raise InvalidInput("payment_id must be a string")
        payment_id = safe_text(str(payment_id), field="payment_id").strip() or None
    if payment_id is not None and len(payment_id) > MAX_PAYMENT_ID:
        raise InvalidInput(f"payment_id must be at most {MAX_PAYMENT_ID} characters")
    if payment_method is None or (isinstance(payment_method, str) and not payment_method.strip()):
        return payment_id, DEFAULT_PAYMENT_METHOD
    if not isinstance(payment_method, str) or len(payment_method.strip()) > MAX_PAYMENT_METHOD:
        raise InvalidInput(f"payment_method must be a string of at most {MAX_PAYMENT_METHOD}"
                           " characters")
    return payment_id, safe_text(payment_method.strip(), field="payment_method")


def reason_text(reason: Any) -> str | None:
    """A cancel/refund reason as storable text (checked before anything is written)."""
    if reason is None or reason == "":
        return None
    return safe_text(str(reason), field="reason")


__all__ = ["DEFAULT_PAYMENT_METHOD", "MAX_LINE_QUANTITY", "MAX_TOTAL", "load_offers",
           "order_currency", "parse_lines", "payment_fields", "reason_text"]
