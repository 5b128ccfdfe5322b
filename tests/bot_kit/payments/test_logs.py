"""The bot's payment logs carry the charge, customer and Telegram user ids as fields."""

from __future__ import annotations

import json
import logging
from io import StringIO
from typing import Any

import pytest
from aiogram import Bot, Dispatcher

from billable.logs import JsonFormatter, LogContextFilter
from bot_kit.testing import FakeSession, UpdateFactory
from tests.bot_kit.payments.flows import billing_user_id, pay, request_invoice

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_rejected_payment_is_logged_with_its_ids(dp: Dispatcher, bot: Bot,
                                                         session: FakeSession,
                                                         updates: UpdateFactory,
                                                         catalog: dict) -> None:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger("bot_kit.payments")
    logger.addHandler(handler)
    try:
        alice = updates.user()
        invoice = await request_invoice(dp, bot, session, updates, alice)
        await pay(dp, bot, updates, alice, invoice, "short-1", total_amount=1)
    finally:
        logger.removeHandler(handler)

    entries: list[dict[str, Any]] = [json.loads(line) for line in stream.getvalue().splitlines()]
    [rejected] = [e for e in entries if "rejected" in e["message"]]
    assert rejected["charge_id"] == "short-1" and rejected["reason"] == "amount_mismatch"
    assert rejected["customer_id"] == await billing_user_id(alice)
    assert rejected["telegram_user_id"] == alice.id
