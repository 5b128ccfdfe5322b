"""Lazy settings for billable.

Every attribute is read from ``django.conf.settings`` on first access and then kept until the
settings change: ``override_settings`` (and ``pytest-django``'s ``settings`` fixture, which uses
it) swaps the settings object and sends ``setting_changed``, and either drops the kept values,
so an override takes effect immediately. Settings read on every ledger call (the consumption
order, the event endpoint cache lifetime) cost a dictionary lookup instead of Django's lookup,
which for a setting the host left out raises and catches an ``AttributeError`` each time.
Assigning to ``django.conf.settings`` at run time (which Django's documentation rules out) is
not seen.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

#: Database vendors whose SQL ``billable.ledger.sql`` supports (``billable.E006`` refuses others).
SUPPORTED_VENDORS = ("postgresql", "sqlite")

DEFAULTS: dict[str, Any] = {
    "BILLABLE_API_TOKEN": None,
    "BILLABLE_USER_MODEL": None,
    "BILLABLE_SHOW_DOCS": True,
    "BILLABLE_API_TITLE": "Billable Engine API",
    "BILLABLE_CURRENCY": "USD",
    "BILLABLE_CONSUMPTION_ORDER": "fifo",
    # Default lifetime of a hold made by reserve_quota, in seconds.
    "BILLABLE_RESERVATION_TTL": 900,
    # Page size of GET /wallet/transactions (and its upper bound).
    "BILLABLE_TRANSACTIONS_PAGE_SIZE": 100,
    # Serve billable.metrics.views.metrics_view without credentials (network-restricted hosts).
    "BILLABLE_METRICS_PUBLIC": False,
    # Outbound events (docs/events.md): seconds a worker holds a claimed delivery, the HTTP
    # timeout of one POST (must be shorter than the lease), attempts before a delivery is
    # dead, the backoff (first delay, cap) in seconds, the quota.low threshold (an int, or a
    # dict of product key -> int; 0: no quota.low), and how long a process caches which event
    # types some endpoint wants (a new endpoint is seen by other processes within that time).
    "BILLABLE_EVENTS_LEASE": 60.0,
    "BILLABLE_EVENTS_TIMEOUT": 10.0,
    "BILLABLE_EVENTS_MAX_ATTEMPTS": 12,
    "BILLABLE_EVENTS_RETRY_BASE": 10.0,
    "BILLABLE_EVENTS_RETRY_MAX": 3600.0,
    "BILLABLE_EVENTS_QUOTA_LOW": 0,
    "BILLABLE_EVENTS_ENDPOINTS_CACHE": 5.0,
    # The bot's gated fast path (docs/performance.md, "Gated fast path"): on PostgreSQL a gated
    # update's hold and settle run as one statement each on an async psycopg pool of at most
    # GATED_POOL_SIZE connections per event loop. False: always the general (sync) path.
    "BILLABLE_GATED_FAST_PATH": True,
    "BILLABLE_GATED_POOL_SIZE": 4,
    # The fast hold commits without waiting for its WAL flush (synchronous_commit = off for that
    # one transaction); the settle's durable commit flushes it (docs/guarantees.md). False: the
    # hold waits for the disk like every other transaction.
    "BILLABLE_GATED_HOLD_ASYNC_COMMIT": True,
    # The async consume (docs/performance.md, "REST: the consume in the event loop"): on
    # PostgreSQL TransactionService.aconsume_quota (and so POST /wallet/consume) runs a consume
    # the first batch covers as one statement on the same async pool (which
    # BILLABLE_GATED_FAST_PATH = False also turns off). False: always the general path.
    "BILLABLE_ASYNC_CONSUME": True,
    # Seconds a fast-path statement waits for a row lock before it gives up and the general path
    # runs instead (lock_timeout of the pool's connections). Its job: a caller whose own open
    # transaction holds that lock in another thread (async_to_sync inside atomic()) gets the
    # general path, in its transaction, instead of waiting forever. None or 0: wait.
    "BILLABLE_FAST_PATH_LOCK_TIMEOUT": 2.0,
    # Growth: seconds a discounted order keeps its promo use before it is given back.
    "BILLABLE_PROMO_RESERVATION_TTL": 3600,
    # Growth: seconds an unclaimed gift stays claimable.
    "BILLABLE_GIFT_TTL": 30 * 24 * 3600,
}

CONSUMPTION_ORDERS = ("fifo", "expiring_first")
#: Longest hold lifetime (``ttl`` of ``reserve_quota`` and ``BILLABLE_RESERVATION_TTL``): a year.
MAX_RESERVATION_TTL_SECONDS = 365 * 24 * 3600


class BillableSettings:
    """Attribute access to the ``BILLABLE_*`` settings with typed defaults.

    Both the full name (``billable_settings.BILLABLE_CURRENCY``) and the short one
    (``billable_settings.CURRENCY``) work.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._source: object = None

    def __getattr__(self, name: str) -> Any:
        # The settings object, which override_settings replaces (on enable and on disable).
        source = settings.__dict__.get("_wrapped")
        if source is not self._source:
            self.reset()
            self._source = source
        try:
            return self._values[name]
        except KeyError:
            pass
        full = name if name.startswith("BILLABLE_") else f"BILLABLE_{name}"
        if full not in DEFAULTS:
            raise AttributeError(f"Unknown billable setting: {name}")
        value = self._values[name] = getattr(settings, full, DEFAULTS[full])
        return value

    def reset(self, **_: Any) -> None:
        """Forget the values read so far (connected to ``setting_changed``)."""
        self._values.clear()

    @property
    def USER_MODEL(self) -> str:
        """The billing account model: always ``AUTH_USER_MODEL``."""
        return str(settings.AUTH_USER_MODEL)


billable_settings = BillableSettings()
setting_changed.connect(billable_settings.reset, dispatch_uid="billable.conf.reset")

__all__ = ["CONSUMPTION_ORDERS", "DEFAULTS", "BillableSettings", "billable_settings"]
