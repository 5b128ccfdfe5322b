"""Repairs found by reconciliation, through the same exactly-once paths as live updates.

Only two kinds of difference are repaired; every other one is reported for a human:

* ``missing_locally`` (Telegram holds a user's Stars payment we never recorded — e.g. the update
  was lost before the inbox existed): the charge is rebuilt from the ``StarTransaction`` (payer,
  invoice payload, amount, subscription period) and confirmed with ``confirm_payment`` — the
  code behind ``successful_payment``, exactly once per charge id. A charge that cannot be
  honoured (unknown payer, bad payload, cancelled order …) is recorded as rejected and its
  refund queued, as a live one would be. A charge Telegram already refunded is left alone.
* ``refund_mismatch`` where Telegram refunded and we did not record it: handled like a
  ``refunded_payment`` message (``record_refunded``: grant reversed once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot_kit.models import StarSubscription
from bot_kit.payments.confirm import PaymentFacts, confirm_payment
from bot_kit.payments.reconcile import MISSING_LOCALLY, REFUND_MISMATCH, Difference
from bot_kit.payments.refunds import record_refunded

CONFIRM = "confirm"
RECORD_REFUND = "record_refund"


@dataclass(frozen=True)
class Repair:
    """One planned repair: ``action`` is ``confirm`` (with ``facts``) or ``record_refund``."""

    charge_id: str
    action: str
    facts: PaymentFacts | None = None

    def describe(self) -> str:
        if self.facts is None:
            return f"{self.action} {self.charge_id}"
        return (f"{self.action} {self.charge_id}: {self.facts.total_amount} XTR from Telegram "
                f"user {self.facts.telegram_user_id}")


def facts_from_transaction(transaction: Any) -> PaymentFacts:
    """The ``successful_payment`` facts a ``StarTransaction`` from a user still carries."""
    partner = transaction.source
    payload = partner.invoice_payload or ""
    recurring = partner.subscription_period is not None
    renewal = recurring and StarSubscription.objects.filter(
        telegram_user_id=partner.user.id, invoice_payload=payload).exists()
    return PaymentFacts(telegram_user_id=partner.user.id, charge_id=transaction.id,
                        payload=payload, currency="XTR", total_amount=int(transaction.amount),
                        is_recurring=recurring, is_first_recurring=recurring and not renewal)


def plan_repairs(differences: Iterable[Difference],
                 transactions: Iterable[Any]) -> list[Repair]:
    """The repairs for ``differences`` (the others need a human), in charge id order."""
    incoming = {t.id: t for t in transactions
                if getattr(t.source, "type", None) == "user" and getattr(t.source, "user", None)}
    plan = []
    for difference in differences:
        theirs, ours = difference.theirs, difference.ours
        if difference.kind == MISSING_LOCALLY and theirs is not None and not theirs.refunded:
            found = incoming.get(difference.charge_id)
            if found is not None:
                plan.append(Repair(difference.charge_id, CONFIRM,
                                   facts_from_transaction(found)))
        elif (difference.kind == REFUND_MISMATCH and theirs is not None and theirs.refunded
              and ours is not None and not ours.refunded):
            plan.append(Repair(difference.charge_id, RECORD_REFUND))
    return plan


def apply_repair(repair: Repair, secrets: Sequence[str], *,
                 provider: str = "telegram", bot_id: int | None = None) -> str:
    """Carry out one repair (idempotent); returns a one-line outcome. ``bot_id``: the bot
    whose Stars transactions these are (recorded on the payment; see ``confirm_payment``)."""
    if repair.action == RECORD_REFUND:
        record_refunded(repair.charge_id)
        return "refund recorded, grant reversed"
    assert repair.facts is not None
    result = confirm_payment(repair.facts, tuple(secrets), provider=provider, bot_id=bot_id)
    if not result.created:
        return "already recorded"
    if result.confirmed:
        return f"confirmed: order {result.order_id} paid"
    return f"rejected ({result.payment.reason}): refund #{result.refund_id} queued"


__all__ = ["CONFIRM", "RECORD_REFUND", "Repair", "apply_repair", "facts_from_transaction",
           "plan_repairs"]
