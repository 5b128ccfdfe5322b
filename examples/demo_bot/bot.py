"""The demo bot: every billable feature in one small aiogram 3 app.

What the kit gives with ``setup_billing`` (nothing to write): ``/balance``, ``/trial``, ``/buy``
with Telegram Stars invoices, pre-checkout and receipts, ``/subscribe`` (Stars subscriptions),
``/paysupport``, and ``/refund <charge id>`` for admins.

What this module adds, to show the service layer from handlers:

* ``/start`` — a welcome and the command list (in English or Russian: the demo's own texts
  follow the same language as the kit's, ``bot_kit.texts.user_language``);
* ``/exchange`` — spend internal credits on ten predictions (``TransactionService.aexchange``);
* ``/predict`` — a gated command: it needs one ``PREDICTIONS`` unit, charged only if the
  handler succeeds; without quota the kit shows its paywall with buy buttons.

The catalog (SKUs below) is loaded by ``python manage.py billable_seed_demo``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import Message

from bot_kit import BillingConfig, RedisThrottle, Throttle, requires_quota, setup_billing
from bot_kit.fsm import FailSafeStorage

#: Offers of the demo catalog (``billable_seed_demo``).
TRIAL_SKU = "OFF_WELCOME_TRIAL"
STAR_PACKS = ("STARS_PACK_S", "STARS_PACK_M")
EXCHANGE_SKU = "EXCHANGE_PREDICT_10"
SUBSCRIPTION_SKU = "PREMIUM_MONTH"
#: The consumable spent by /predict.
PREDICTIONS = "PREDICTIONS"

WELCOME = (
    "Welcome to the billable demo bot!\n"
    "/trial – three free predictions\n"
    "/buy – buy credits with Telegram Stars\n"
    "/exchange – trade 50 credits for 10 predictions\n"
    "/predict – get a prediction (uses one)\n"
    "/balance – what you have\n"
    "/subscribe – a monthly Premium subscription\n"
    "/paysupport – help with a payment"
)

WELCOME_RU = (
    "Добро пожаловать в демо-бот billable!\n"
    "/trial – три бесплатных предсказания\n"
    "/buy – купить кредиты за Telegram Stars\n"
    "/exchange – обменять 50 кредитов на 10 предсказаний\n"
    "/predict – получить предсказание (тратит одно)\n"
    "/balance – что у вас есть\n"
    "/subscribe – месячная подписка Премиум\n"
    "/paysupport – помощь с платежом"
)

#: Predictions are not sold for Stars directly, so the paywall explains the way to get them.
PAYWALL = ("You have run out of {product}. Claim three free ones with /trial, "
           "or /buy credits and /exchange them.")
PAYWALL_RU = ("У вас закончилось: «{product}». Три бесплатных — /trial, "
              "или купите кредиты (/buy) и обменяйте их (/exchange).")

#: The demo's own texts by language (the kit's come from its gettext catalogs).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "welcome": WELCOME,
        "closed": "The exchange is closed right now.",
        "not_enough": "Not enough credits ({reason}). /buy a pack first.",
        "exchanged": "Exchanged {price} credits. Predictions left: {left}.",
    },
    "ru": {
        "welcome": WELCOME_RU,
        "closed": "Обмен сейчас закрыт.",
        "not_enough": "Недостаточно кредитов. Сначала купите пакет: /buy.",
        "exchanged": "Обменяно {price} кредитов. Осталось предсказаний: {left}.",
    },
}

PROPHECIES = (
    "A pull request you fear will pass review on the first try.",
    "Your next migration will apply cleanly on PostgreSQL.",
    "The ledger balances. It always does.",
    "An old bug will introduce itself politely and leave.",
    "Someone will star your repository today.",
)


def demo_config(*, admin_ids: frozenset[int] | None = None) -> BillingConfig:
    """The bot's billing configuration; admins and the signing secret come from the env."""
    if admin_ids is None:
        raw = os.environ.get("DEMO_BOT_ADMIN_IDS", "")
        admin_ids = frozenset(int(part) for part in raw.split(",") if part.strip().isdigit())
    secret = os.environ.get("DEMO_BOT_SIGNING_SECRET", "demo-signing-secret-change-me")
    return BillingConfig(
        offers=STAR_PACKS,
        trial_offer=TRIAL_SKU,
        subscription_offers=(SUBSCRIPTION_SKU,),
        admin_ids=admin_ids,
        signing_secrets=(secret,),
        texts={"en": {"paywall_no_offers": PAYWALL}, "ru": {"paywall_no_offers": PAYWALL_RU}},
    )


def prophecy_for(message: Message) -> str:
    """A stable pick (the same message always gets the same prophecy)."""
    seed = f"{message.chat.id}:{message.message_id}".encode()
    return PROPHECIES[hashlib.sha256(seed).digest()[0] % len(PROPHECIES)]


async def text(message: Message, data: dict[str, Any], key: str, **fmt: Any) -> str:
    """The demo's text ``key`` in the user's language (the one the kit speaks to them)."""
    from bot_kit.texts import user_language

    config: BillingConfig | None = data.get("billing_config")
    lang = (await user_language(config, message.from_user, data.get("billing_lang"))
            if config is not None else "en")
    return TEXTS.get(lang, TEXTS["en"])[key].format(**fmt)


def create_router() -> Router:
    """The demo's own commands (a new Router each call: aiogram attaches a router once)."""
    router = Router(name="demo_bot")

    @router.message(CommandStart())
    async def start(message: Message, **data: Any) -> None:
        await message.answer(await text(message, data, "welcome"))

    @router.message(Command("exchange"))
    async def exchange(message: Message, billing_user_id: int, **data: Any) -> None:
        """Spend credits on predictions; billable errors reach the kit's error handler."""
        from billable.models import Offer
        from billable.services import TransactionService

        offer = await Offer.objects.filter(sku=EXCHANGE_SKU, is_active=True).afirst()
        if offer is None:
            await message.answer(await text(message, data, "closed"))
            return
        result: dict[str, Any] = await TransactionService.aexchange(
            billing_user_id, offer=offer, metadata={"telegram_message_id": message.message_id},
            idempotency_key=f"tg-exchange-{message.chat.id}-{message.message_id}",
        )
        if not result["success"]:
            await message.answer(await text(message, data, "not_enough",
                                            reason=result["message"]))
            return
        left = await TransactionService.aget_balance(billing_user_id, PREDICTIONS)
        await message.answer(await text(message, data, "exchanged",
                                        price=result["metadata"]["price"], left=left))

    @router.message(Command("predict"))
    @requires_quota(PREDICTIONS, amount=1)
    async def predict(message: Message) -> None:
        await message.answer(f"🔮 {prophecy_for(message)}")

    return router


def build_dispatcher(config: BillingConfig | None = None, *,
                     storage: BaseStorage | None = None) -> Dispatcher:
    """A Dispatcher with the demo router and the billing kit installed.

    ``storage`` is aiogram's FSM storage (e.g. ``RedisStorage`` when several workers run).
    Without one, ``BOT_KIT_REDIS_URL`` (env ``REDIS_URL`` in the demo settings) selects a
    fail-safe Redis storage and, for the default config, a shared Redis throttle.
    """
    redis = _redis()
    if storage is None and redis is not None:
        storage = FailSafeStorage(RedisStorage(redis))
    if config is None:
        config = demo_config()
        if redis is not None:
            config = replace(config, throttle=Throttle(limit=5, window=10,
                                                       backend=RedisThrottle(redis)))
    dp = Dispatcher(storage=storage or MemoryStorage())
    setup_billing(dp, config)  # first: the kit's routers are tried before the demo's
    dp.include_router(create_router())
    return dp


def _redis() -> Any:
    from bot_kit.health import redis_url

    url = redis_url()
    if url is None:
        return None
    from redis.asyncio import Redis

    return Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


__all__ = [
    "EXCHANGE_SKU",
    "PREDICTIONS",
    "STAR_PACKS",
    "SUBSCRIPTION_SKU",
    "TEXTS",
    "TRIAL_SKU",
    "WELCOME",
    "WELCOME_RU",
    "build_dispatcher",
    "create_router",
    "demo_config",
]
