"""How the admin shows customers and amounts: display names instead of generated usernames,
Telegram Stars as whole numbers.

* :func:`money` — ``50 XTR`` rather than ``50.00`` for Stars (Telegram has no fraction of a
  Star); other currencies keep the two places of the amount columns.
* :class:`CustomerColumnMixin` — a ``customer`` list column (display name, linked to the
  customer page) for every admin whose rows have a ``user``; the identities the name is built
  from are prefetched, so a page of rows costs one extra query, not one per row.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from billable.models.catalog import STARS_CURRENCY
from billable.models.identities import customer_display_name


def whole_stars(amount: Any, currency: Any) -> Any:
    """``amount`` as an ``int`` when ``currency`` is XTR and the amount is whole, else as is."""
    if str(currency or "").upper() != STARS_CURRENCY or amount is None:
        return amount
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        return amount
    if value.is_finite() and value == value.to_integral_value():
        return int(value)
    return amount


def money(amount: Any, currency: Any = None, *, with_currency: bool = True) -> str:
    """An amount for the admin: ``"50 XTR"``, ``"9.99 USD"``; ``"—"`` when there is none."""
    if amount is None:
        return "—"
    shown = str(whole_stars(amount, currency))
    return f"{shown} {currency}" if with_currency and currency else shown


def admin_url(model_label: str, object_id: Any) -> str | None:
    """Admin change URL for ``app_label.model`` and ``object_id``, or None if not registered."""
    app_label, _, model = model_label.partition(".")
    try:
        return reverse(f"admin:{app_label}_{model}_change", args=[quote(object_id)])
    except NoReverseMatch:
        return None


def customer_link(user: Any) -> str:
    """The customer's display name linked to its customer page (plain text if unlinkable)."""
    if user is None:
        return "—"
    url = admin_url("billable.customer", user.pk)
    name = customer_display_name(user)
    if url is None:
        return name
    return format_html('<a href="{}">{}</a>', url, name)


class CustomerColumnMixin:
    """Adds the ``customer`` column (display name + link) and prefetches what it needs.

    The admin using it names ``"customer"`` in ``list_display`` and has a ``user`` foreign key.
    """

    customer_field = "user"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        return queryset.prefetch_related(f"{self.customer_field}__billable_external_identities")

    @admin.display(description=_("Customer"), ordering="user")
    def customer(self, obj: Any) -> str:
        return customer_link(getattr(obj, self.customer_field))


__all__ = ["CustomerColumnMixin", "customer_link", "money", "whole_stars"]
