"""``setup_billing(dp, config)``: wire bot_kit into a host's Dispatcher (or Router)."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from bot_kit import keys
from bot_kit.config import BillingConfig
from bot_kit.handlers import create_core_routers
from bot_kit.middlewares.identity import IdentityCache, IdentityMiddleware, _connect_signals
from bot_kit.middlewares.quota import QuotaMiddleware
from bot_kit.paywall import notify
from bot_kit.texts import error_text

logger = logging.getLogger("bot_kit")

#: Observers that get the quota middleware (every event type a handler can be gated on).
GATED_EVENTS = ("message", "edited_message", "callback_query", "inline_query",
                "chosen_inline_result", "business_message", "pre_checkout_query",
                "shipping_query", "poll_answer")


def setup_billing(dp: Dispatcher | Router, config: BillingConfig, *,
                  cache: IdentityCache | None = None) -> list[Router]:
    """Install the identity and quota middlewares and include the kit's routers.

    The kit's routers (gifts, ``/promo`` and ``/notifications`` — each only its own commands,
    deep links and callbacks —, the purchase flow, then ``/paysupport``, ``/trial``,
    ``/balance``) are placed **before** every router already included, so a catch-all handler
    of the host can never swallow a payment update. Billable errors raised by any handler are
    answered with a localized text. Calling it twice for one dispatcher is refused
    (``RuntimeError``). Returns the routers included.
    """
    from bot_kit.payments import create_payment_routers

    if getattr(dp, "_bot_kit_config", None) is not None:
        raise RuntimeError("setup_billing() was already called for this dispatcher")
    dp._bot_kit_config = config  # type: ignore[union-attr]
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
    from bot_kit.handlers.growth import create_growth_routers

    routers = [*create_growth_routers(config), *create_payment_routers(config),
               *create_core_routers(config)]
    for position, router in enumerate(routers):
        inline_magic_filters(router)
        dp.include_router(router)
        dp.sub_routers.remove(router)
        dp.sub_routers.insert(position, router)
    dp.errors.register(_billing_error_handler(config), _billable_error_filter())
    return routers


def billing_config(dp: Dispatcher | Router) -> BillingConfig | None:
    """The ``BillingConfig`` that ``setup_billing`` installed on ``dp`` (``None`` if none)."""
    config = getattr(dp, "_bot_kit_config", None)
    return config if isinstance(config, BillingConfig) else None


def inline_magic_filters(router: Router) -> None:
    """Evaluate the magic filters (``F.successful_payment`` …) of ``router`` and its children
    in the event loop.

    aiogram runs every non-async filter through ``asyncio.to_thread``; a magic filter is a
    pure attribute check, so the thread hop (tens of microseconds, milliseconds on a loaded
    host) would be paid by every update that reaches the kit's routers.
    """
    for observer in router.observers.values():
        for handler in observer.handlers:
            for event_filter in handler.filters or ():
                if event_filter.magic is not None and not event_filter.awaitable:
                    event_filter.callback = _in_loop(event_filter.magic)
                    event_filter.awaitable = True
    for child in router.sub_routers:
        inline_magic_filters(child)


def _in_loop(magic: Any) -> Any:
    async def resolve(value: Any) -> Any:
        return magic.resolve(value)

    return resolve


def _billable_error_filter() -> ExceptionTypeFilter:
    from billable.exceptions import BillableError

    return ExceptionTypeFilter(BillableError)


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


__all__ = ["GATED_EVENTS", "billing_config", "inline_magic_filters", "setup_billing"]
