"""The revenue dashboard in the admin: filters, figures, SVG charts and a CSV download.

It is the change list of the :class:`~billable.models.RevenueDashboard` proxy, so it appears in
the admin index and needs that model's view permission. ``?start=YYYY-MM-DD&end=YYYY-MM-DD
&bot=<id>`` choose the days and the bot; ``csv/`` (``admin:billable_revenuedashboard_csv``)
downloads the same figures. Figures come from :mod:`billable.selectors.dashboard` and are
defined in docs/dashboard.md; nothing here queries the database itself.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from billable.admin import charts
from billable.admin.display import whole_stars
from billable.dashboard import NO_BOT
from billable.exceptions import InvalidInput
from billable.models import RevenueDashboard
from billable.selectors.dashboard import (
    MAX_DAYS,
    CurrencyRevenue,
    Dashboard,
    DashboardQuery,
    build_dashboard,
    parse_query,
)
from billable.selectors.dashboard_export import csv_rows
from billable.services.csv_cells import escape_cell

TEMPLATE = "admin/billable/dashboard.html"


def query_from(request: HttpRequest) -> DashboardQuery:
    """The dashboard query of ``request.GET`` (raises ``InvalidInput`` subclasses)."""
    params = request.GET
    return parse_query(start=params.get("start"), end=params.get("end"), bot=params.get("bot"))


def revenue_chart(revenue: CurrencyRevenue) -> SafeString:
    cur = revenue.currency  # Stars are drawn and labelled whole
    bars = [charts.Bar(day.day.isoformat(),
                       ((whole_stars(day.net, cur), charts.NET, "net"),
                        (whole_stars(day.refunded, cur), charts.REFUNDED, "refunded")))
            for day in revenue.by_day]
    return charts.column_chart(f"revenue-{revenue.currency}", bars,
                               title=gettext("Revenue per day in %(currency)s")
                               % {"currency": revenue.currency})


def offers_chart(revenue: CurrencyRevenue) -> SafeString:
    rows = [(f"{offer.name} ({offer.sku})", whole_stars(offer.net, revenue.currency))
            for offer in revenue.by_offer]
    return charts.bar_list(f"offers-{revenue.currency}", rows, colour=charts.OFFERS,
                           title=gettext("Net revenue per offer in %(currency)s")
                           % {"currency": revenue.currency})


def percent(rate: Decimal | None) -> str:
    """``Decimal("0.1234")`` → ``"12.34 %"``; ``None`` (nothing to divide by) → ``"—"``."""
    return "—" if rate is None else f"{(rate * 100).quantize(Decimal('0.01'))} %"


def chart_context(dashboard: Dashboard) -> dict[str, Any]:
    """The SVG charts of a dashboard and its rates as percentages, ready for the template."""
    currencies = [{"revenue": revenue, "chart": revenue_chart(revenue),
                   "offers_chart": offers_chart(revenue),
                   "refund_rate": percent(revenue.refund_rate),
                   "refunded_share": percent(revenue.refunded_share)}
                  for revenue in dashboard.revenue]
    subscriptions = []
    for result in dashboard.subscriptions:
        chart = None
        if result.figures is not None:
            points = [(day.isoformat(), active) for day, active
                      in zip(dashboard.period.days, result.figures.active_by_day, strict=True)]
            chart = charts.line_chart(f"subscriptions-{result.name}", points,
                                      colour=charts.SUBSCRIPTIONS,
                                      title=gettext("Active subscriptions (%(source)s)")
                                      % {"source": result.label})
        churn = percent(result.figures.churn_rate) if result.figures else "—"
        subscriptions.append({"result": result, "chart": chart, "churn_rate": churn})
    consumption = charts.bar_list(
        "consumption", [(f"{line.name} ({line.product_key})", line.units)
                        for line in dashboard.consumption],
        colour=charts.CONSUMPTION, title=gettext("Units consumed per product"))
    return {"currencies": currencies, "subscription_sources": subscriptions,
            "consumption_chart": consumption,
            "refund_rate": percent(dashboard.refund_rate),
            "conversion_rate": percent(dashboard.conversion.rate)}


@admin.register(RevenueDashboard)
class RevenueDashboardAdmin(admin.ModelAdmin):
    """Read-only figures; the only pages are the dashboard and its CSV download."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        info = self.opts.app_label, self.opts.model_name
        return [
            path("", wrap(self.changelist_view), name="{}_{}_changelist".format(*info)),
            path("csv/", wrap(self.csv_view), name="{}_{}_csv".format(*info)),
        ]

    def _check_permission(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The dashboard page; invalid filters are shown on the page with status 400."""
        self._check_permission(request)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request), "opts": self.opts,
            "title": gettext("Revenue dashboard"), "max_days": MAX_DAYS, "no_bot": NO_BOT,
            "params": request.GET, "csv_query": request.GET.urlencode(),
            **(extra_context or {})}
        try:
            dashboard = build_dashboard(query_from(request))
        except InvalidInput as exc:
            context.update(error=exc.message, error_code=exc.code)
            return TemplateResponse(request, TEMPLATE, context, status=400)
        context.update(dashboard=dashboard, query=dashboard.query, **chart_context(dashboard))
        return TemplateResponse(request, TEMPLATE, context)

    def csv_view(self, request: HttpRequest) -> HttpResponse:
        """The figures as CSV (one figure per row); invalid filters get a 400 text answer."""
        self._check_permission(request)
        try:
            dashboard = build_dashboard(query_from(request))
        except InvalidInput as exc:
            return HttpResponse(f"{exc.code}: {exc.message}\n", status=400,
                                content_type="text/plain; charset=utf-8")
        query = dashboard.query
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="revenue-{query.start}-{query.end}.csv"')
        writer = csv.writer(response)
        for row in csv_rows(dashboard):
            writer.writerow([escape_cell(cell) for cell in row])
        return response


__all__ = ["RevenueDashboardAdmin", "chart_context", "query_from"]
