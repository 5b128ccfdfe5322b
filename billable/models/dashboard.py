"""The revenue dashboard's place in the admin: a proxy of ``Order`` (no table of its own).

The admin shows it as "Revenue dashboard" under Billable; its view permission
(``billable.view_revenuedashboard``) is what a staff member needs to see the figures.
"""

from __future__ import annotations

from billable.models.orders import Order


class RevenueDashboard(Order):
    """Admin-facing proxy: the dashboard page replaces its change list."""

    class Meta:
        proxy = True
        verbose_name = "revenue dashboard"
        verbose_name_plural = "revenue dashboard"
