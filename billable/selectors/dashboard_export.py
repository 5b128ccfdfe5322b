"""The revenue dashboard as plain data (the REST API's JSON) and as CSV rows (the admin's
download). The CSV is a flattening of the same data, so both always carry the same figures.

Money is a decimal string (``"12.50"``), rates are decimal strings with four places or
``null`` when undefined (nothing to divide by); amounts of different currencies are never
added up.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from billable.dashboard import SubscriptionResult
from billable.selectors.dashboard import Amounts, CurrencyRevenue, Dashboard

#: Columns of the CSV download (one figure per row).
CSV_HEADER = ("section", "day", "currency", "key", "label", "metric", "value")
_AMOUNT_FIELDS = ("gross", "refunded", "net", "orders", "refunded_orders")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _amounts(amounts: Amounts) -> dict[str, Any]:
    return {"gross": str(amounts.gross), "refunded": str(amounts.refunded),
            "net": str(amounts.net), "orders": amounts.orders,
            "refunded_orders": amounts.refunded_orders}


def _currency(revenue: CurrencyRevenue) -> dict[str, Any]:
    return {
        "kind": revenue.kind, **_amounts(revenue),
        "refund_rate": _text(revenue.refund_rate),
        "refunded_share": _text(revenue.refunded_share),
        "paying_users": revenue.paying_users,
        "by_day": [{"day": day.day.isoformat(), **_amounts(day)} for day in revenue.by_day],
        "by_offer": [{"sku": offer.sku, "name": offer.name, "units": offer.units,
                      **_amounts(offer)} for offer in revenue.by_offer],
    }


def _subscriptions(result: SubscriptionResult, days: tuple[Any, ...]) -> dict[str, Any]:
    figures = result.figures
    if figures is None:
        return {"name": result.name, "label": result.label, "available": False}
    return {
        "name": result.name, "label": result.label, "available": True,
        "active_at_start": figures.active_at_start, "active_at_end": figures.active_at_end,
        "new": figures.new, "churned": figures.churned,
        "churn_rate": _text(figures.churn_rate),
        "active_by_day": [{"day": day.isoformat(), "active": active}
                          for day, active in zip(days, figures.active_by_day, strict=True)],
    }


def dashboard_data(dashboard: Dashboard) -> dict[str, Any]:
    """Every figure as JSON-ready data (the ``data`` of ``GET /reports/dashboard``)."""
    query = dashboard.query
    return {
        "start": query.start.isoformat(), "end": query.end.isoformat(),
        "timezone": dashboard.timezone, "bot": query.bot, "bots": list(dashboard.bots),
        "totals": {"paying_users": dashboard.paying_users, "orders": dashboard.orders,
                   "refunded_orders": dashboard.refunded_orders,
                   "refund_rate": _text(dashboard.refund_rate)},
        "revenue": {revenue.currency: _currency(revenue) for revenue in dashboard.revenue},
        "conversion": {"trial_users": dashboard.conversion.trial_users,
                       "converted": dashboard.conversion.converted,
                       "rate": _text(dashboard.conversion.rate)},
        "consumption": [{"product_key": line.product_key, "name": line.name,
                         "units": line.units, "debits": line.debits, "users": line.users}
                        for line in dashboard.consumption],
        "subscriptions": {
            "available": dashboard.subscriptions_available,
            "sources": [_subscriptions(result, dashboard.period.days)
                        for result in dashboard.subscriptions],
        },
    }


Row = tuple[str, str, str, str, str, str, Any]


def _figures(section: str, values: dict[str, Any], fields: tuple[str, ...], *, day: str = "",
             currency: str = "", key: str = "", label: str = "") -> Iterator[Row]:
    for field in fields:
        value = values[field]
        yield (section, day, currency, key, label, field, "" if value is None else value)


def _revenue_rows(currency: str, data: dict[str, Any]) -> Iterator[Row]:
    yield from _figures("revenue", data, (*_AMOUNT_FIELDS, "refund_rate", "refunded_share",
                                          "paying_users"), currency=currency)
    for day in data["by_day"]:
        yield from _figures("revenue_by_day", day, _AMOUNT_FIELDS, day=day["day"],
                            currency=currency)
    for offer in data["by_offer"]:
        yield from _figures("revenue_by_offer", offer, ("units", *_AMOUNT_FIELDS),
                            currency=currency, key=offer["sku"], label=offer["name"])


def _subscription_rows(data: dict[str, Any]) -> Iterator[Row]:
    yield ("subscriptions", "", "", "", "", "available", str(data["available"]).lower())
    for source in data["sources"]:
        name, label = source["name"], source["label"]
        fields = ("active_at_start", "active_at_end", "new", "churned", "churn_rate")
        if not source["available"]:
            yield ("subscriptions", "", "", name, label, "available", "false")
            continue
        yield from _figures("subscriptions", source, fields, key=name, label=label)
        for day in source["active_by_day"]:
            yield ("subscriptions_by_day", day["day"], "", name, label, "active", day["active"])


def csv_rows(dashboard: Dashboard) -> Iterator[Row]:
    """The CSV download: one figure per row, :data:`CSV_HEADER` first."""
    data = dashboard_data(dashboard)
    yield CSV_HEADER  # type: ignore[misc]
    yield from _figures("period", data, ("start", "end", "timezone"))
    yield ("period", "", "", "", "", "bot", data["bot"] or "")
    yield from _figures("totals", data["totals"], tuple(data["totals"]))
    for currency, revenue in data["revenue"].items():
        yield from _revenue_rows(currency, revenue)
    yield from _figures("conversion", data["conversion"], ("trial_users", "converted", "rate"))
    for line in data["consumption"]:
        yield from _figures("consumption", line, ("units", "debits", "users"),
                            key=line["product_key"], label=line["name"])
    yield from _subscription_rows(data["subscriptions"])


__all__ = ["CSV_HEADER", "csv_rows", "dashboard_data"]
