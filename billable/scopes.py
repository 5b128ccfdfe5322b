"""The vocabulary of API key scopes (no imports: models, admin and the API all read it).

A scope names what a key may do, ``<area>:<verb>``. ``admin`` grants everything (it is what
``BILLABLE_API_TOKEN`` is). Which scope each endpoint needs is in
:data:`billable.api.auth.ROUTE_SCOPES`; ``docs/api-keys.md`` has the table.
"""

from __future__ import annotations

from collections.abc import Iterable

from billable.exceptions import UnknownScope

ADMIN = "admin"

#: Every scope with what it lets a key do, in the order the admin lists them.
SCOPES: dict[str, str] = {
    "catalog:read": "Read products and offers (GET /products, /catalog).",
    "wallet:read": "Read balances, batches and the ledger (GET /balance, /wallet/...).",
    "wallet:consume": "Spend quota and exchange currency (POST /wallet/consume, /exchange).",
    "orders:read": "Read orders (GET /orders/{id}).",
    "orders:write": "Create and cancel orders (POST /orders, /orders/{id}/cancel).",
    "orders:confirm": "Mark orders paid, which grants their products (POST .../confirm).",
    "orders:refund": "Refund paid orders, which revokes their products (POST .../refund).",
    "customers:write": "Identify customers: create users and identities (POST /identify).",
    "customers:merge": "Merge one customer into another (POST /customers/merge).",
    "trials:grant": "Grant free trial offers (POST /demo/trial-grant).",
    "referrals:read": "Read referral statistics (GET /referrals/stats).",
    "referrals:write": "Record referrals (POST /referrals).",
    "metrics:read": "Read the Prometheus metrics endpoint.",
    "reports:read": "Read the revenue dashboard's figures (GET /reports/dashboard).",
    "promo:read": "Check promo codes and quote their discounts (GET /promo/quote).",
    "promo:redeem": "Redeem promo codes: grants, discounted orders (POST /promo/redeem).",
    "gifts:read": "Read a gift's offer and state (GET /gifts/{token}).",
    "gifts:claim": "Claim gifts for customers, which grants them (POST /gifts/{token}/claim).",
    ADMIN: "Everything above, now and in later versions (what BILLABLE_API_TOKEN is).",
}


def normalize_scopes(values: Iterable[str]) -> list[str]:
    """``values`` stripped, lower-cased, de-duplicated and in :data:`SCOPES` order.

    Raises :class:`UnknownScope` naming the first value that is not a scope.
    """
    wanted = set()
    for value in values:
        scope = str(value).strip().lower()
        if scope not in SCOPES:
            raise UnknownScope(f"Unknown scope {value!r}; known scopes: {', '.join(SCOPES)}")
        wanted.add(scope)
    return [scope for scope in SCOPES if scope in wanted]


def grants(granted: Iterable[str], required: str) -> bool:
    """True if a key holding ``granted`` may do what ``required`` names."""
    held = set(granted)
    return ADMIN in held or required in held


__all__ = ["ADMIN", "SCOPES", "UnknownScope", "grants", "normalize_scopes"]
