"""``setup_billing(dp, config)``: wire bot_kit into a host's Dispatcher (or Router).

Only aiogram's public API is used: middlewares are registered on the observers, the kit's
routers are included with ``include_router`` (in call order, visible in ``dp.sub_routers``) and
the billing-error handler is registered on ``dp.errors``. Nothing of aiogram is patched and no
attribute is set on the dispatcher.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from billable.exceptions import BillableError
from bot_kit import keys
from bot_kit.config import BillingConfig
from bot_kit.handlers import create_core_routers
from bot_kit.handlers.growth import create_growth_routers
from bot_kit.middlewares.identity import (
    IdentityCache,
    IdentityMiddleware,
    _connect_signals,
    billing_config,
    start_identity_listener,
    stop_identity_listener,
)
from bot_kit.middlewares.quota import QuotaMiddleware
from bot_kit.payments import create_payment_routers
from bot_kit.paywall import notify
from bot_kit.routing import install_gates, merge_routers
from bot_kit.texts import error_text

logger = logging.getLogger("bot_kit")

#: Observers that get the quota middleware (every event type a handler can be gated on).
GATED_EVENTS = ("message", "edited_message", "callback_query", "inline_query",
                "chosen_inline_result", "business_message", "pre_checkout_query",
                "shipping_query", "poll_answer")


def create_routers(config: BillingConfig) -> list[Router]:
    """The kit's router (a list of one, ``"bot_kit"``), fresh: the handlers of the feature
    routers in the order they should be tried — the growth features (gifts, ``/promo``,
    ``/notifications``: each handles only its own commands, deep links and callbacks), the
    purchase flow and Stars subscriptions, then ``/paysupport``, ``/trial`` and ``/balance``.
    The features are merged into one router (:func:`bot_kit.routing.merge_routers`) with a gate
    in front of its message and callback handlers: a host's plain message or own button costs
    one router visit and one cheap check."""
    features = [*create_growth_routers(config), *create_payment_routers(config),
                *create_core_routers(config)]
    return [install_gates(merge_routers("bot_kit", features))]


def setup_billing(dp: Dispatcher | Router, config: BillingConfig, *,
                  cache: IdentityCache | None = None,
                  include_routers: bool = True) -> list[Router]:
    """Install the identity and quota middlewares and the billing-error handler; include the
    kit's routers; return them.

    aiogram tries routers in the order they were included, so **call ``setup_billing`` before
    including your own routers**: then a catch-all handler of yours can never swallow a payment
    update. ``dp.sub_routers`` shows the order. With ``include_routers=False`` nothing is
    included: include the returned routers yourself, where you want them (a warning is logged
    when ``setup_billing`` includes them after routers of yours). Commands are renamed or
    removed with ``BillingConfig.commands``. Billable errors raised by any handler are answered
    with a localized text. Calling it twice for one dispatcher is refused (``RuntimeError``).
    """
    if billing_config(dp) is not None:
        raise RuntimeError("setup_billing() was already called for this dispatcher")
    _connect_signals()
    identity = IdentityMiddleware(config, cache=cache)
    if isinstance(dp, Dispatcher):
        dp.update.outer_middleware(identity)
    else:
        for name, observer in dp.observers.items():
            if name != "error":
                observer.outer_middleware(identity)
    quota = QuotaMiddleware(config)
    for name in GATED_EVENTS:
        dp.observers[name].middleware(quota)
    routers = create_routers(config)
    if include_routers:
        if dp.sub_routers:
            logger.warning(
                "setup_billing() includes the kit's routers after %s: a catch-all handler "
                "there could swallow payment updates; call setup_billing() first",
                ", ".join(repr(r.name) for r in dp.sub_routers))
        dp.include_routers(*routers)
    dp.errors.register(_billing_error_handler(config), ExceptionTypeFilter(BillableError))
    if config.identity_notices:  # cached users need no query while the listener is connected
        dp.startup.register(_start_listener)
        dp.shutdown.register(_stop_listener)
    return routers


async def _start_listener() -> None:
    await start_identity_listener()


async def _stop_listener() -> None:
    await stop_identity_listener()


def _billing_error_handler(config: BillingConfig) -> Any:
    async def on_billing_error(event: ErrorEvent, bot: Bot, **data: Any) -> bool:
        """Answer a billable error from any handler with a localized text (no traceback)."""
        code = getattr(event.exception, "code", "billable_error")
        logger.warning("Billing error in a handler: %s", event.exception)
        lang = data.get(keys.BILLING_LANG) or config.default_language
        inner = event.update.event
        try:
            await notify(inner, bot, error_text(code, lang, config))
        except Exception:
            logger.exception("Could not tell the user about a billing error")
        return True

    return on_billing_error


__all__ = ["GATED_EVENTS", "billing_config", "create_routers", "setup_billing"]
