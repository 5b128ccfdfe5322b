"""Management commands: the refund worker and Stars reconciliation (pure core + command)."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bot_kit.payments.reconcile import (
    AMOUNT_MISMATCH,
    MISSING_IN_TELEGRAM,
    MISSING_LOCALLY,
    REFUND_MISMATCH,
    ChargeRecord,
    compare_charges,
)
from bot_kit.testing import FakeSession, make_bot


def test_compare_charges_reports_every_kind_of_difference() -> None:
    ours = [ChargeRecord("same", 50), ChargeRecord("only-ours", 10),
            ChargeRecord("amount", 50), ChargeRecord("refund", 50, refunded=True)]
    theirs = [ChargeRecord("same", 50), ChargeRecord("only-theirs", 7),
              ChargeRecord("amount", 5), ChargeRecord("refund", 50)]
    differences = compare_charges(ours, theirs)
    assert [(d.charge_id, d.kind) for d in differences] == [
        ("amount", AMOUNT_MISMATCH), ("only-ours", MISSING_IN_TELEGRAM),
        ("only-theirs", MISSING_LOCALLY), ("refund", REFUND_MISMATCH)]
    assert "ours: 50 XTR refunded; telegram: 50 XTR" in differences[-1].describe()
    assert compare_charges(ours[:1], theirs[:1]) == []


def star_transaction(charge_id: str, amount: int, *, refund: bool = False) -> dict[str, Any]:
    partner = {"type": "user", "transaction_type": "invoice_payment",
               "user": {"id": 7, "is_bot": False, "first_name": "A"}}
    side = "receiver" if refund else "source"
    return {"id": charge_id, "amount": amount, "date": int(time.time()), side: partner}


def record_payment(charge_id: str, amount: int, status: str = "confirmed") -> None:
    from bot_kit.models import TelegramPayment

    TelegramPayment.objects.create(charge_id=charge_id, telegram_user_id=7, currency="XTR",
                                   total_amount=amount, status=status)


@pytest.fixture
def fake_bot(monkeypatch: pytest.MonkeyPatch) -> FakeSession:
    session = FakeSession()
    monkeypatch.setattr("bot_kit.management.commands._bot.command_bot",
                        lambda: make_bot(session))
    return session


@pytest.mark.django_db(transaction=True)
def test_reconcile_command_passes_when_records_match(fake_bot: FakeSession) -> None:
    record_payment("c1", 50)
    record_payment("c2", 20, status="refunded")
    fake_bot.fake_api.star_transactions = [
        star_transaction("c1", 50), star_transaction("c2", 20),
        star_transaction("c2", 20, refund=True)]
    out = StringIO()
    call_command("billable_reconcile_stars", stdout=out)
    assert "OK" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_reconcile_command_fails_on_differences(fake_bot: FakeSession) -> None:
    record_payment("c1", 50)
    fake_bot.fake_api.star_transactions = [star_transaction("c9", 5)]
    out = StringIO()
    with pytest.raises(CommandError, match="2 difference"):
        call_command("billable_reconcile_stars", stdout=out)
    assert "missing_in_telegram: c1" in out.getvalue()
    assert "missing_locally: c9" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_refunds_command_works_due_rows(fake_bot: FakeSession) -> None:
    from bot_kit.models import RefundRequest
    from bot_kit.payments.refunds import request_refund

    record_payment("c1", 50, status="rejected")
    refund = request_refund("c1", reason="test")
    out = StringIO()
    call_command("billable_refunds", stdout=out)
    assert f"refund #{refund.pk}: done" in out.getvalue()
    assert RefundRequest.objects.get(pk=refund.pk).state == "done"
    [call] = fake_bot.calls_to("refundStarPayment")
    assert call.params["telegram_payment_charge_id"] == "c1"


def test_commands_need_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with pytest.raises(CommandError, match="TELEGRAM_BOT_TOKEN"):
        call_command("billable_reconcile_stars")
