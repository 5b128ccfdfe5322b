"""Signals sent by billable services, always after the database transaction commits.

Receivers never see data that is later rolled back, and a failing receiver cannot roll back a
payment. Async receivers are supported (Django runs them from ``send``/``asend``).

:func:`send_on_commit` is also the one hook of the outbound event outbox: called inside the
sender's transaction, it writes the signal's events (``billable.events``) right then, so they
commit or roll back with the change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

order_confirmed = Signal()  # order
order_refunded = Signal()  # order
transaction_created = Signal()  # transaction
quota_consumed = Signal()  # usage
trial_activated = Signal()  # user_id, products
referral_attached = Signal()  # referral
customers_merged = Signal()  # target_user_id, source_user_id
order_cancelled = Signal()  # order
subscription_renewed = Signal()  # subscription (bot_kit's StarSubscription)
subscription_failed = Signal()  # subscription
subscription_cancelled = Signal()  # subscription


#: The outbox's two hooks (``record``, ``wanted``), installed by ``BillableConfig.ready`` through
#: :func:`install_outbox`: the engine imports this module before the app registry is ready, so it
#: cannot import the outbox (which needs the models) itself.
_OUTBOX: dict[str, Callable[..., Any]] = {}


def install_outbox(*, record: Callable[..., Any], wanted: Callable[..., bool],
                   cached: Callable[..., bool | None] | None = None) -> None:
    """Make :func:`send_on_commit` write outbound events and :func:`wanted` count endpoints
    (``cached``: the same answer from the endpoint cache only, ``None`` when it is stale)."""
    _OUTBOX.update(record=record, wanted=wanted)
    if cached is not None:
        _OUTBOX["cached"] = cached


#: Counters of consumption (``billable.metrics``), called for every usage row once it committed,
#: in the writer's thread or event loop: ``(count, acount)`` taking ``(batch_id, units)``. A
#: counter is not a receiver: it needs no model instance and, after an async charge, no thread
#: hop (``asend`` runs every sync receiver in a worker thread).
_COUNTERS: list[tuple[Callable[[Any, int], None], Callable[[Any, int], Awaitable[None]]]] = []


def install_usage_counter(*, count: Callable[[Any, int], None],
                          acount: Callable[[Any, int], Awaitable[None]]) -> None:
    """Count every committed consumption with ``count`` (sync writers) or ``acount`` (the
    async gated fast path); installing the same pair twice is a no-op."""
    if (count, acount) not in _COUNTERS:
        _COUNTERS.append((count, acount))


def usage_counters() -> list[tuple[Callable[[Any, int], None],
                                   Callable[[Any, int], Awaitable[None]]]]:
    """The installed consumption counters (:func:`install_usage_counter`)."""
    return _COUNTERS


def outbox_wants(signal: Signal, using: str | None = None, *, cached_only: bool = False
                 ) -> bool | None:
    """Whether an event endpoint wants ``signal``'s events (receivers aside). With
    ``cached_only`` no query is made: ``None`` when the endpoint cache cannot tell."""
    if "record" not in _OUTBOX:
        return False
    if not cached_only:
        return bool(_OUTBOX["wanted"](signal, using))
    hook = _OUTBOX.get("cached")
    return None if hook is None else hook(signal, using)


def wanted(signal: Signal, sender: Any, using: str | None = None) -> bool:
    """Whether sending ``signal`` does anything: a connected receiver or an event endpoint.

    Senders that build costly arguments only for receivers check this first.
    """
    if signal.has_listeners(sender):
        return True
    hook = _OUTBOX.get("wanted")
    return hook is not None and bool(hook(signal, using))


def send_on_commit(signal: Signal, sender: Any, using: str | None = None, **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction commits (immediately when none is open).

    Receiver errors are isolated (``send_robust``): a broken receiver is logged, never
    propagated into the caller that already committed money movements. The signal's outbound
    events are written now, in the caller's transaction (:func:`billable.events.record`).
    """
    record = _OUTBOX.get("record")
    if record is not None:
        record(signal, sender, kwargs, using=using)

    def _send() -> None:
        for receiver, result in signal.send_robust(sender=sender, **kwargs):
            if isinstance(result, Exception):
                logging.getLogger("billable.signals").error(
                    "Signal receiver %r failed", receiver, exc_info=result
                )

    transaction.on_commit(_send, using=using)


__all__ = [
    "customers_merged",
    "install_usage_counter",
    "order_cancelled",
    "order_confirmed",
    "order_refunded",
    "outbox_wants",
    "quota_consumed",
    "referral_attached",
    "send_on_commit",
    "subscription_cancelled",
    "subscription_failed",
    "subscription_renewed",
    "transaction_created",
    "trial_activated",
    "usage_counters",
    "wanted",
]

# -- growth: promo codes, gifts, alerts (sent after commit, like every signal above) ---------
promo_redeemed = Signal()  # redemption, user_id, code
gift_claimed = Signal()  # gift, buyer_id, claimer_id
quota_low = Signal()  # notice, user_id, product_key, balance, threshold
batch_expiring = Signal()  # notice, user_id, product_key, batch_id, expires_at

__all__ += ["batch_expiring", "gift_claimed", "promo_redeemed", "quota_low"]
