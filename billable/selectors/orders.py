"""Order reads for the bot and the API: one order, the SKUs of its lines."""

from __future__ import annotations

from typing import Any

from billable.models import Order, OrderItem


def find_order(order_id: Any) -> Order | None:
    """The order ``order_id`` (its primary key), or ``None``."""
    return Order.objects.filter(pk=order_id).first()


def order_skus(order_id: Any) -> list[str]:
    """The SKUs of an order's lines, in line order."""
    return [str(sku) for sku in OrderItem.objects.filter(order_id=order_id)
            .order_by("pk").values_list("offer__sku", flat=True)]


__all__ = ["find_order", "order_skus"]
