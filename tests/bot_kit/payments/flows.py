"""Small steps of the purchase story shared by the Dispatcher tests."""

from __future__ import annotations

from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import User
from asgiref.sync import sync_to_async

from bot_kit.callbacks import BuyOffer
from bot_kit.testing import FakeSession, UpdateFactory


async def request_invoice(dp: Dispatcher, bot: Bot, session: FakeSession,
                          updates: UpdateFactory, user: User, sku: str = "STARS_10") -> dict:
    """Press the buy button of ``sku``; return the ``sendInvoice`` params."""
    before = len(session.calls_to("sendInvoice"))
    await dp.feed_update(bot, updates.callback(BuyOffer(sku=sku).pack(), user=user))
    calls = session.calls_to("sendInvoice")
    assert len(calls) == before + 1
    return calls[-1].params


def invoice_amount(invoice: dict) -> int:
    [price] = invoice["prices"]
    return int(price["amount"])


async def pre_checkout(dp: Dispatcher, bot: Bot, session: FakeSession, updates: UpdateFactory,
                       user: User, payload: str, amount: int,
                       currency: str = "XTR") -> dict:
    """Feed a pre-checkout query; return the ``answerPreCheckoutQuery`` params."""
    await dp.feed_update(bot, updates.pre_checkout(payload=payload, total_amount=amount,
                                                   currency=currency, user=user))
    return session.calls_to("answerPreCheckoutQuery")[-1].params


async def pay(dp: Dispatcher, bot: Bot, updates: UpdateFactory, user: User, invoice: dict,
              charge_id: str, **fields: Any) -> None:
    fields.setdefault("total_amount", invoice_amount(invoice))
    fields.setdefault("currency", invoice["currency"])
    fields.setdefault("payload", invoice["payload"])
    await dp.feed_update(bot, updates.successful_payment(charge_id=charge_id, user=user,
                                                         **fields))


@sync_to_async
def billing_user_id(tg_user: User) -> int:
    from billable.models import ExternalIdentity

    return ExternalIdentity.get_user_by_identity(str(tg_user.id), provider="telegram").pk


@sync_to_async
def balance(tg_user: User, product_key: str = "CREDITS") -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(tg_user.id), provider="telegram")
    return int(TransactionService.get_balance(user.pk, product_key))


def receipts(session: FakeSession) -> list[str]:
    return [str(c.params["text"]) for c in session.calls_to("sendMessage")
            if "Payment received" in str(c.params.get("text"))]


def texts_sent(session: FakeSession) -> list[str]:
    """The text of every ``sendMessage`` call, oldest first."""
    return [str(c.params.get("text", "")) for c in session.calls_to("sendMessage")]
