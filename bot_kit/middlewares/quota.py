"""Inner middleware enforcing ``@requires_quota``: hold → run handler → charge or release.

For a gated handler the middleware:

1. refuses the update politely when the user is throttled or unknown (database down);
2. holds the units through the billing port (``bot_kit.billing.ahold``) under the idempotency key
   ``tg:<bot id>:<update id>:<KEY>`` — a missing balance shows the paywall instead;
3. runs the handler; commits the hold when it returns, releases it when it raises (and
   re-raises).

A redelivered update (same bot, same ``update_id``) finds its hold: when it was already charged
or is still being processed the handler is **not** run again (logged at INFO); when the first
attempt failed and released its hold the handler runs again with a fresh hold. When the inbox
hands the update out as a *takeover* (the worker of the first attempt died: its lease ran out)
or as a later attempt after a failed one (``inbox_attempt`` > 1), a hold still ``HELD`` belongs
to that ended attempt: it is released and the handler runs again with a fresh hold, so the user
gets an answer and is charged at most once (:func:`earlier_attempt_ended`).

A throttle backend that fails (Redis down) lets the update through: throttling fails open with
one warning per outage (``bot_kit.throttling.allowed``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.flags import get_flag
from aiogram.types import TelegramObject, Update

from billable.exceptions import BillableError, QuotaError
from bot_kit import billing, keys
from bot_kit.billing import Hold
from bot_kit.config import BillingConfig
from bot_kit.decorators import QuotaRequirement
from bot_kit.paywall import notify, send_paywall
from bot_kit.texts import error_text, get_text
from bot_kit.throttling import allowed

logger = logging.getLogger("bot_kit.quota")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def hold_quota(user_id: int, requirement: QuotaRequirement, key: str, *,
               ttl: int | None = None, takeover: bool = False,
               metadata: dict[str, Any] | None = None) -> Hold:
    """Hold the units of ``requirement`` for an update under ``key`` (sync; see
    :func:`bot_kit.billing.hold`)."""
    return billing.hold(user_id, requirement.product_key, requirement.amount, key=key, ttl=ttl,
                        takeover=takeover, metadata=metadata)


def settle_hold(reservation_id: str | None) -> None:
    """Charge a hold after the handler returned (sync; see :func:`bot_kit.billing.settle`)."""
    billing.settle(reservation_id)


def earlier_attempt_ended(data: dict[str, Any]) -> bool:
    """Whether a hold already ``HELD`` under this update's key belongs to an attempt that is
    over, so it is released and the handler runs again.

    The inbox runs one attempt of an update at a time (lease + token): when it hands the update
    out again, every earlier attempt has ended — it died (``inbox_takeover``: the lease ran
    out) or it failed and was rescheduled (``inbox_attempt`` > 1), e.g. because the answer to
    its hold's commit was lost with the connection. Outside the inbox (a bot fed by plain
    aiogram) neither key is set, and a ``HELD`` hold may be a concurrent redelivery's, still
    running: it is not touched.
    """
    if data.get(keys.INBOX_TAKEOVER):
        return True
    attempt = data.get(keys.INBOX_ATTEMPT)
    return isinstance(attempt, int) and attempt > 1


class QuotaMiddleware(BaseMiddleware):
    """Charge-on-success gating of handlers flagged with ``@requires_quota``."""

    def __init__(self, config: BillingConfig) -> None:
        self.config = config

    async def __call__(self, handler: Handler, event: TelegramObject,
                       data: dict[str, Any]) -> Any:
        flag = get_flag(data, keys.QUOTA_FLAG)
        if flag is None:
            return await handler(event, data)
        requirement = QuotaRequirement.coerce(flag)
        assert requirement is not None
        bot: Bot = data["bot"]
        lang: str = data.get(keys.BILLING_LANG) or self.config.default_language
        user_id: int | None = data.get(keys.BILLING_USER_ID)
        if user_id is None:
            await notify(event, bot, get_text("error_unavailable", lang, self.config))
            return None
        if not await self._allowed(event, bot, user_id, lang):
            return None
        hold = await self._hold(event, data, requirement, user_id, lang)
        if hold is None or not hold.run:
            return None
        return await self._run(handler, event, data, hold)

    async def _allowed(self, event: TelegramObject, bot: Bot, user_id: int, lang: str) -> bool:
        throttle = self.config.throttle
        if throttle is None or throttle.backend is None:
            return True
        wait = await allowed(throttle, f"{bot.id}:{user_id}")
        if wait <= 0:
            return True
        seconds = max(int(wait + 0.999), 1)
        await notify(event, bot, get_text("throttled", lang, self.config, seconds=seconds))
        return False

    async def _hold(self, event: TelegramObject, data: dict[str, Any],
                    requirement: QuotaRequirement, user_id: int, lang: str) -> Hold | None:
        bot: Bot = data["bot"]
        update: Update | None = data.get("event_update")
        update_id = update.update_id if update is not None else id(event)
        key = f"tg:{bot.id}:{update_id}:{requirement.product_key}"
        try:
            hold = await billing.ahold(
                user_id, requirement.product_key, requirement.amount, key=key,
                ttl=self.config.reservation_ttl, takeover=earlier_attempt_ended(data),
                metadata=self.config.bot_metadata(source="bot_kit"))
        except QuotaError:
            await send_paywall(event, bot, product_key=requirement.product_key, lang=lang,
                               config=self.config, user_id=user_id)
            return None
        except BillableError as exc:
            logger.warning("Quota hold refused for user %s: %s", user_id, exc)
            await notify(event, bot, error_text(exc.code, lang, self.config))
            return None
        if not hold.run:
            logger.info("Update %s not run again for user %s: %s", key, user_id, hold.reason)
        return hold

    async def _run(self, handler: Handler, event: TelegramObject, data: dict[str, Any],
                   hold: Hold) -> Any:
        try:
            result = await handler(event, data)
        except BaseException:
            try:
                await billing.arelease(hold.reservation_id)
            except Exception:
                logger.exception("Could not release hold %s", hold.reservation_id)
            raise
        try:
            await billing.asettle(hold.reservation_id)
        except Exception:
            logger.exception("Could not commit hold %s (it will expire)", hold.reservation_id)
        return result


__all__ = ["Hold", "QuotaMiddleware", "earlier_attempt_ended", "hold_quota", "settle_hold"]
