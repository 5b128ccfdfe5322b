"""Order-line snapshots: what one order line grants, frozen when the order is created.

``OrderItem.snapshot`` holds ``{"items": [{"product_id", "product_key", "quantity",
"period_unit", "period_value"}, …]}`` — the offer's items at order time. Paying the order grants
exactly that, whatever happened to the offer since (an offer edited from 10 to 1,000 units after
the invoice was sent still grants 10). Lines without a snapshot (created outside
``OrderService.create_order``, e.g. by 0.2-era code) are granted from the offer as it is at
payment time, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

from billable.exceptions import ProductNotFound
from billable.models import Offer, OrderItem, Product

SNAPSHOT_VERSION = 1


@dataclass
class LineItem:
    """One product of a snapshot, shaped like an ``OfferItem`` for the grant code."""

    product: Product
    quantity: int
    period_unit: str
    period_value: int | None

    @property
    def product_id(self) -> Any:
        return self.product.pk


def snapshot_of(offer: Offer) -> dict[str, Any]:
    """The snapshot of ``offer``'s items (prefetch ``items__product`` to avoid queries)."""
    return {"v": SNAPSHOT_VERSION, "items": [
        {"product_id": item.product_id, "product_key": item.product.product_key,
         "quantity": item.quantity, "period_unit": item.period_unit,
         "period_value": item.period_value}
        for item in offer.items.all()
    ]}


def has_snapshot(line: OrderItem | None) -> TypeGuard[OrderItem]:
    """True when ``line`` carries a snapshot (its grants come from it, not from the offer)."""
    return line is not None and isinstance(line.snapshot, dict) and "items" in line.snapshot


def line_items(lines: Iterable[OrderItem]) -> dict[Any, list[LineItem]]:
    """The snapshot items of every line, by line pk; products are read in one query.

    A product deleted since the order was created raises :class:`ProductNotFound` (nothing is
    granted; the order stays payable once the product is restored, or can be cancelled).
    """
    rows = {line.pk: list((line.snapshot or {}).get("items", [])) for line in lines}
    wanted = {int(item["product_id"]) for items in rows.values() for item in items}
    products = Product.objects.in_bulk(wanted) if wanted else {}
    missing = wanted - set(products)
    if missing:
        raise ProductNotFound(f"Product #{min(missing)} of an order line no longer exists")
    return {pk: [LineItem(product=products[int(item["product_id"])],
                          quantity=int(item["quantity"]), period_unit=str(item["period_unit"]),
                          period_value=item.get("period_value"))
                 for item in items]
            for pk, items in rows.items()}


__all__ = ["LineItem", "has_snapshot", "line_items", "snapshot_of"]
