"""``billable_reconcile_stars --repair``: dry run by default; ``--apply`` confirms a charge we
never recorded through the exactly-once path, queues the refund of one that cannot be
honoured, and records a refund Telegram made — each once, however often it runs."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from billable.models import ExternalIdentity, Order
from billable.services import TransactionService
from bot_kit.config import BillingConfig
from bot_kit.models import RefundRequest, TelegramPayment
from bot_kit.payments.invoices import prepare_invoice
from bot_kit.testing import FakeSession, make_bot
from tests.bot_kit.payments.conftest import SECRETS

pytestmark = pytest.mark.django_db(transaction=True)
CONFIG = BillingConfig(offers=("STARS_10",), signing_secrets=SECRETS)


def paid_by_user(charge_id: str, amount: int, user_id: int, payload: str | None, *,
                 refund: bool = False) -> dict[str, Any]:
    partner: dict[str, Any] = {"type": "user", "transaction_type": "invoice_payment",
                               "user": {"id": user_id, "is_bot": False, "first_name": "A"}}
    if payload is not None:
        partner["invoice_payload"] = payload
    return {"id": charge_id, "amount": amount, "date": int(time.time()),
            ("receiver" if refund else "source"): partner}


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> FakeSession:
    from aiogram import Dispatcher

    from bot_kit.setup import setup_billing

    session = FakeSession()
    monkeypatch.setattr("bot_kit.management.commands._bot.command_bot",
                        lambda: make_bot(session))
    dp = Dispatcher()
    setup_billing(dp, CONFIG)
    monkeypatch.setattr("bot_kit.management.commands.runbot.load_dispatcher", lambda _: dp)
    return session


def buyer(telegram_id: int) -> int:
    user = get_user_model().objects.create(username=f"tg{telegram_id}")
    ExternalIdentity.objects.create(provider="telegram", external_id=str(telegram_id),
                                    user=user)
    return int(user.pk)


def reconcile(*args: str) -> str:
    out = StringIO()
    with pytest.raises(CommandError, match="difference"):
        call_command("billable_reconcile_stars", *args, stdout=out)
    return out.getvalue()


def test_repair_confirms_missing_charges_once_and_refunds_what_cannot_be_honoured(
        telegram: FakeSession, catalog: dict) -> None:
    user_id = buyer(901)
    invoice = prepare_invoice(user_id, 901, "STARS_10", CONFIG)
    TelegramPayment.objects.create(charge_id="seen", telegram_user_id=901, currency="XTR",
                                   total_amount=50, status="confirmed")
    telegram.fake_api.star_transactions = [
        paid_by_user("lost", invoice.amount, 901, invoice.payload),  # never recorded
        paid_by_user("forged", 50, 901, "b1.nonsense"),  # cannot be honoured
        paid_by_user("seen", 50, 901, None),
        paid_by_user("seen", 50, 901, None, refund=True),  # refunded in Telegram only
    ]

    dry = reconcile("--repair")
    assert "[DRY] confirm lost: 50 XTR from Telegram user 901" in dry
    assert "[DRY] record_refund seen" in dry
    assert not TelegramPayment.objects.filter(charge_id="lost").exists()

    applied = reconcile("--repair", "--apply")
    assert "confirm lost: 50 XTR from Telegram user 901 -> confirmed" in applied
    assert "forged" in applied and "refund #" in applied
    assert Order.objects.get(pk=invoice.order_id).status == "paid"
    assert TransactionService.get_balance(user_id, "CREDITS") == 10
    assert RefundRequest.objects.get(payment__charge_id="forged").state == "pending"
    assert TelegramPayment.objects.get(charge_id="seen").status == "refunded"

    out = StringIO()
    call_command("billable_reconcile_stars", "--repair", "--apply", stdout=out)  # idempotent
    assert "OK" in out.getvalue()
    assert TransactionService.get_balance(user_id, "CREDITS") == 10
    assert TelegramPayment.objects.filter(charge_id__in=["lost", "forged"]).count() == 2


def test_apply_needs_repair(telegram: FakeSession) -> None:
    with pytest.raises(CommandError, match="--apply goes with --repair"):
        call_command("billable_reconcile_stars", "--apply")
