"""Template filters of the billable admin pages: ``{% load billable_admin %}``.

``{{ order.total_amount|money:order.currency }}`` → ``"50 XTR"`` / ``"9.99 USD"``
(``billable.admin.display.money``: Telegram Stars are whole).
"""

from __future__ import annotations

from typing import Any

from django import template

from billable.admin.display import money, whole_stars

register = template.Library()


@register.filter(name="money")
def money_filter(amount: Any, currency: Any = None) -> str:
    return money(amount, currency)


@register.filter(name="stars")
def stars_filter(amount: Any, currency: Any = None) -> Any:
    """The amount alone, whole for XTR (for tables whose currency is in a header)."""
    return whole_stars(amount, currency)
