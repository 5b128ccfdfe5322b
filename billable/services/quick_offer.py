"""The admin's quick offer: ``GET_<KEY>`` selling one product, created from the product form."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from billable.conf import billable_settings
from billable.exceptions import InvalidAmount, InvalidInput, InvalidPrice
from billable.models import Offer, OfferItem, Product
from billable.models.catalog import MAX_PERIOD_YEARS, span_allowed
from billable.services.csv_cells import validation_text
from billable.validation import MAX_AMOUNT

_SKU_MAX = Offer._meta.get_field("sku").max_length or 50


def _free_sku(base: str) -> str:
    """``base``, else ``base_1``, ``base_2`` …: the first not used as a SKU or product key."""
    counter = 0
    while True:
        suffix = f"_{counter}" if counter else ""
        candidate = base[: _SKU_MAX - len(suffix)] + suffix
        taken = (Offer.objects.filter(sku=candidate).exists()
                 or Product.objects.filter(product_key=candidate).exists())
        if not taken:
            return candidate
        counter += 1


def _check_quick_offer(price: Any, quantity: Any, period_unit: str,
                       period_value: Any) -> Decimal:
    try:
        amount = Decimal(str(price))
    except InvalidOperation as exc:
        raise InvalidPrice(f"Invalid price: {price!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise InvalidPrice(f"Invalid price: {price!r}")
    if (isinstance(quantity, bool) or not isinstance(quantity, int)
            or not 0 < quantity <= MAX_AMOUNT):
        raise InvalidAmount(f"Quantity must be a positive integer of at most {MAX_AMOUNT}")
    if period_unit not in OfferItem.PeriodUnit.values:
        raise InvalidInput(f"Unknown period unit: {period_unit!r}")
    needs_value = period_unit != OfferItem.PeriodUnit.FOREVER
    if needs_value and (not isinstance(period_value, int) or period_value <= 0):
        raise InvalidAmount("Period value must be a positive integer for a limited period")
    if needs_value and not span_allowed(period_unit, period_value):
        raise InvalidAmount(f"A period may last at most {MAX_PERIOD_YEARS} years.")
    return amount


def create_quick_offer(product: Product, price: Any, *, currency: str | None = None,
                       quantity: int = 1, period_unit: str = OfferItem.PeriodUnit.FOREVER,
                       period_value: int | None = None) -> Offer:
    """Create an active offer ``GET_<KEY>`` (``_1``, ``_2`` … on collision) selling ``product``.

    The offer takes the product's name and description and holds one item. Raises
    ``InvalidPrice`` / ``InvalidAmount`` / ``InvalidInput`` for bad values.
    """
    amount = _check_quick_offer(price, quantity, period_unit, period_value)
    base = f"GET_{product.product_key or product.pk}"
    for _attempt in range(5):
        try:
            with transaction.atomic():
                offer = Offer(sku=_free_sku(base), name=product.name[:255], price=amount,
                              currency=currency or billable_settings.CURRENCY,
                              description=product.description)
                offer.save()
                OfferItem.objects.create(
                    offer=offer, product=product, quantity=quantity, period_unit=period_unit,
                    period_value=period_value if period_unit != "forever" else None,
                )
                return offer
        except ValidationError as exc:
            raise InvalidPrice(validation_text(exc)) from exc
        except IntegrityError:
            continue  # a concurrent writer took the SKU: pick the next free one
    raise InvalidInput(f"Could not allocate a free SKU for {base}")


__all__ = ["create_quick_offer"]
