"""Django system checks for billable misconfiguration (ids ``billable.E00x`` / ``W00x``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections, router

from billable.conf import (
    CONSUMPTION_ORDERS,
    MAX_RESERVATION_TTL_SECONDS,
    SUPPORTED_VENDORS,
    billable_settings,
)


@register(Tags.security)
def check_api_token(app_configs: Any = None, **kwargs: Any) -> list[Warning | Error]:
    token = billable_settings.API_TOKEN
    if token is None or token == "":
        return [
            Warning(
                "BILLABLE_API_TOKEN is not set: every REST API request will be refused (401).",
                hint="Set BILLABLE_API_TOKEN to a long random secret.",
                id="billable.W001",
            )
        ]
    if not isinstance(token, str):
        return [Error("BILLABLE_API_TOKEN must be a string.", id="billable.E001")]
    if not all("!" <= char <= "~" for char in token):
        return [
            Warning(
                "BILLABLE_API_TOKEN holds spaces or characters outside printable ASCII: no "
                "request can present it (headers are read as Latin-1 and the token is "
                "stripped), so every REST API request will be refused (401).",
                hint="Use letters, digits and punctuation only (e.g. secrets.token_urlsafe()).",
                id="billable.W004",
            )
        ]
    if not settings.DEBUG and (len(token) < 16 or token == "change-me-in-production"):
        return [
            Warning(
                "BILLABLE_API_TOKEN is short or a placeholder while DEBUG is off.",
                hint="Use at least 16 random characters in production.",
                id="billable.W002",
            )
        ]
    return []


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Warning | Error]:
    problems: list[Warning | Error] = []
    order = billable_settings.CONSUMPTION_ORDER
    if order not in CONSUMPTION_ORDERS:
        problems.append(
            Error(
                f"BILLABLE_CONSUMPTION_ORDER must be one of {CONSUMPTION_ORDERS}, got {order!r}.",
                id="billable.E002",
            )
        )
    currency = billable_settings.CURRENCY
    if not isinstance(currency, str) or not currency.strip() or len(currency) > 50:
        problems.append(
            Error("BILLABLE_CURRENCY must be a non-empty string of at most 50 characters.",
                  id="billable.E003")
        )
    user_model = billable_settings.BILLABLE_USER_MODEL
    if user_model and user_model.lower() != str(settings.AUTH_USER_MODEL).lower():
        problems.append(
            Warning(
                f"BILLABLE_USER_MODEL ({user_model!r}) differs from AUTH_USER_MODEL "
                f"({settings.AUTH_USER_MODEL!r}); billable always uses AUTH_USER_MODEL.",
                hint="Remove BILLABLE_USER_MODEL or set AUTH_USER_MODEL to the same model.",
                id="billable.W003",
            )
        )
    ttl = billable_settings.RESERVATION_TTL
    valid = isinstance(ttl, int) and not isinstance(ttl, bool)
    if not valid or not 0 < ttl <= MAX_RESERVATION_TTL_SECONDS:
        problems.append(
            Error("BILLABLE_RESERVATION_TTL must be a positive number of seconds, at most "
                  f"{MAX_RESERVATION_TTL_SECONDS} (365 days).", id="billable.E004")
        )
    return problems


@register()
def check_database_dialect(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``billable.E006``: a database billable may use whose SQL dialect the engine's compiled
    statements (``billable.ledger.sql``) do not support (only PostgreSQL and SQLite).

    The vendor is a property of the backend class: nothing connects to the database.
    """
    problems: list[Error] = []
    for alias in settings.DATABASES:
        if not router.allow_migrate(alias, "billable"):
            continue
        vendor = str(connections[alias].vendor)
        if vendor not in SUPPORTED_VENDORS:
            problems.append(Error(
                f"Database {alias!r} uses the {vendor!r} backend; billable's ledger SQL supports "
                f"only {', '.join(SUPPORTED_VENDORS)}.",
                hint="Use PostgreSQL (production) or SQLite (development) for billable's tables.",
                id="billable.E006",
            ))
    return problems


@register()
def check_event_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Outbound events: the lease of a delivery must outlive its HTTP timeout (else a second
    worker could POST an event still in flight), and the numbers must be positive."""
    try:
        lease = float(billable_settings.EVENTS_LEASE)
        timeout = float(billable_settings.EVENTS_TIMEOUT)
        attempts = int(billable_settings.EVENTS_MAX_ATTEMPTS)
        base = float(billable_settings.EVENTS_RETRY_BASE)
        cap = float(billable_settings.EVENTS_RETRY_MAX)
    except (TypeError, ValueError):
        return [Error("BILLABLE_EVENTS_* settings must be numbers.", id="billable.E005")]
    if min(lease, timeout, attempts, base, cap) <= 0 or timeout >= lease:
        return [Error("BILLABLE_EVENTS_LEASE, _TIMEOUT, _MAX_ATTEMPTS, _RETRY_BASE and "
                      "_RETRY_MAX must be positive, and BILLABLE_EVENTS_TIMEOUT shorter than "
                      "BILLABLE_EVENTS_LEASE.", id="billable.E005")]
    return []
