"""The offline demo: the demo bot, real long polling through the inbox, a fake Telegram on
127.0.0.1.

A scripted user talks to the bot through ``bot_kit.testing.FakeBotAPIServer``; the script also
plays Telegram's part of a Stars payment (the ``pre_checkout_query`` and ``successful_payment``
updates). Every line of the chat is printed, then a few checks read the database to show that
the story really happened: trial granted, invoice sent, payment confirmed, quota used, refund
done.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from asgiref.sync import sync_to_async

from bot_kit.callbacks import BuyOffer
from bot_kit.runner import WorkerOptions, run_polling
from bot_kit.testing import FakeBotAPIServer, RecordedCall, UpdateFactory
from examples.demo_bot.bot import PREDICTIONS, STAR_PACKS, build_dispatcher, demo_config

ADMIN_ID = 700_000
QUIET = frozenset({"getMe", "getUpdates", "deleteWebhook", "answerCallbackQuery"})


def describe(call: RecordedCall) -> str | None:
    """One transcript line for a Bot API call made by the bot (None for plumbing)."""
    p = call.params
    if call.method in QUIET:
        return None
    if call.method in ("sendMessage", "editMessageText"):
        rows = (p.get("reply_markup") or {}).get("inline_keyboard") or []
        buttons = " ".join(f"[{b.get('text')}]" for row in rows for b in row)
        return str(p.get("text", "")) + (f"\n{buttons}" if buttons else "")
    if call.method in ("sendInvoice", "createInvoiceLink"):
        price = (p.get("prices") or [{}])[0].get("amount")
        kind = "invoice" if call.method == "sendInvoice" else "invoice link"
        return f"[{kind}] {p.get('title')}: {price} {p.get('currency')}"
    if call.method == "answerPreCheckoutQuery":
        if p.get("ok"):
            return "[pre-checkout] ok"
        return f"[pre-checkout] refused: {p.get('error_message')}"
    if call.method == "refundStarPayment":
        return f"[refundStarPayment] {p.get('telegram_payment_charge_id')}"
    return f"[{call.method}]"


@dataclass
class Conversation:
    """Plays the script against a running fake server and collects the transcript."""

    server: FakeBotAPIServer
    echo: Callable[[str], None]
    user_id: int = 700_001
    charge_id: str = "stxDEMO000000001"
    updates: UpdateFactory = field(default_factory=lambda: UpdateFactory(start_update_id=1))
    lines: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)

    def say(self, who: str, text: str) -> None:
        first, *rest = text.splitlines() or [""]
        for line in [f"{who:<9}> {first}", *(f"{'':<9}  {more}" for more in rest)]:
            self.lines.append(line)
            self.echo(line)

    async def step(self, who: str, shown: str, update: Update, expect: str) -> list[RecordedCall]:
        """Send ``update``, wait for the bot's ``expect`` call, print what the bot did."""
        before, wanted = len(self.server.calls), len(self.server.api.calls_to(expect)) + 1
        self.say(who, shown)
        self.server.put_update(update)
        await self.server.wait_for_call(expect, timeout=15, count=wanted)
        await asyncio.sleep(0.1)  # let the handler finish its other calls
        made = self.server.calls[before:]
        for call in made:
            line = describe(call)
            if line is not None:
                self.say("bot", line)
        return made

    async def command(self, text: str, *, user: Any, expect: str = "sendMessage") -> Any:
        name, _, args = text.lstrip("/").partition(" ")
        made = await self.step("admin" if user.id == ADMIN_ID else "user", text,
                               self.updates.command(name, args or None, user=user), expect)
        return made

    async def play(self) -> None:
        """The story: start → paywall → trial → buy → pay → exchange → predict → refund."""
        user = self.updates.user(self.user_id, first_name="Ada", username="ada")
        admin = self.updates.user(ADMIN_ID, first_name="Grace", username="grace_admin")
        await self.command("/start", user=user)
        await self.command("/predict", user=user)  # no predictions yet: the paywall
        await self.command("/trial", user=user)
        self.checks["trial granted"] = await _has_trial(self.user_id)
        await self.command("/buy", user=user)
        invoice = await self._press_buy(user, STAR_PACKS[0])
        self.checks["invoice sent"] = invoice.params.get("currency") == "XTR"
        await self._pay(user, invoice)
        self.checks["payment confirmed"] = await _order_state(self.charge_id) == "paid"
        await self.command("/exchange", user=user)
        before = await _balance(self.user_id, PREDICTIONS)
        await self.command("/predict", user=user)
        after = await _balance(self.user_id, PREDICTIONS)
        self.checks["quota used"] = before > 0 and after == before - 1
        await self.command("/balance", user=user)
        await self.command(f"/refund {self.charge_id}", user=admin)
        self.checks["refund done"] = (
            await _order_state(self.charge_id) == "refunded"
            and any(c.params.get("telegram_payment_charge_id") == self.charge_id
                    for c in self.server.api.calls_to("refundStarPayment")))
        await self.command("/balance", user=user)  # the refunded credits are gone
        await self.command("/subscribe", user=user)
        await self.command("/paysupport", user=user)
        # The same bot for a Russian-speaking user: the kit's texts, the catalog's names and
        # the demo's own /start all follow the user's language.
        ivan = self.updates.user(self.user_id + 1, first_name="Иван", language_code="ru")
        [welcome] = await self.command("/start", user=ivan)
        [catalog] = await self.command("/buy", user=ivan)
        buttons = [b["text"] for row in (catalog.params.get("reply_markup") or {}).get(
            "inline_keyboard", []) for b in row]
        self.checks["speaks Russian"] = (
            str(welcome.params["text"]).startswith("Добро пожаловать")
            and "100 кредитов — 50 ⭐" in buttons)

    async def _press_buy(self, user: Any, sku: str) -> RecordedCall:
        data = BuyOffer(sku=sku).pack()
        await self.step("user", f"(taps the {sku} button)", self.updates.callback(data, user=user),
                        "sendInvoice")
        return self.server.api.calls_to("sendInvoice")[-1]

    async def _pay(self, user: Any, invoice: RecordedCall) -> None:
        payload, currency = str(invoice.params["payload"]), str(invoice.params["currency"])
        amount = int(invoice.params["prices"][0]["amount"])
        await self.step("telegram", f"pre_checkout_query: {amount} {currency}",
                        self.updates.pre_checkout(payload=payload, total_amount=amount,
                                                  currency=currency, user=user),
                        "answerPreCheckoutQuery")
        await self.step("telegram", f"successful_payment: {self.charge_id}",
                        self.updates.successful_payment(payload=payload, total_amount=amount,
                                                        currency=currency,
                                                        charge_id=self.charge_id, user=user),
                        "sendMessage")


@sync_to_async
def _has_trial(telegram_id: int) -> bool:
    from billable.models import TrialHistory

    return bool(TrialHistory.has_used_trial(telegram_id=telegram_id))


@sync_to_async
def _order_state(charge_id: str) -> str | None:
    from billable.models import Order

    order = Order.objects.filter(payment_id=charge_id).first()
    return order.status if order else None


@sync_to_async
def _balance(telegram_id: int, product_key: str) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    return int(TransactionService.get_balance(user.pk, product_key)) if user else 0


async def play_offline(echo: Callable[[str], None] = print) -> Conversation:
    """Start the fake Bot API and the bot (``bot_kit.runner``: polling through the durable
    inbox, its workers and the refund worker), play the script, stop everything."""
    async with FakeBotAPIServer() as server:
        bot = Bot("4242:DEMO", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        dp = build_dispatcher(demo_config(admin_ids=frozenset({ADMIN_ID})))
        stop = asyncio.Event()
        runtime = asyncio.create_task(run_polling(dp, bot, stop=stop, handle_signals=False,
                                                  workers=WorkerOptions(interval=0.2)))
        run = secrets.randbelow(900_000) + 100_000  # fresh ids: the demo db is reused
        conversation = Conversation(server, echo, user_id=7_000_000 + run,
                                    charge_id=f"stxDEMO{run:010d}",
                                    updates=UpdateFactory(start_update_id=run * 1000))
        try:
            await server.wait_for_call("deleteWebhook", timeout=15)
            await conversation.play()
        finally:
            stop.set()
            await asyncio.wait_for(runtime, 20)
    return conversation


__all__ = ["Conversation", "describe", "play_offline"]
