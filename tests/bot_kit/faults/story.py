"""The paid story the fault tests replay: buyers with pending orders, their payments, checks.

Everything runs in the test process against the test's own database (sync; call it through
``sync_to_async`` from async tests).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from io import StringIO
from typing import Any

import aiohttp
from aiogram.types import Update, User
from django.contrib.auth import get_user_model
from django.core.management import call_command

from bot_kit.testing import UpdateFactory, update_to_json
from examples.demo_bot.bot import PREDICTIONS, TRIAL_SKU, demo_config

PACK = "STARS_PACK_S"
PACK_CREDITS = 100


@dataclass(frozen=True)
class Purchase:
    """A buyer with a pending order, and the charge Telegram will report for it."""

    tg_user: User
    payload: str
    amount: int
    charge_id: str

    def update(self, updates: UpdateFactory) -> Update:
        return updates.successful_payment(payload=self.payload, total_amount=self.amount,
                                          charge_id=self.charge_id, user=self.tg_user)


def customer(updates: UpdateFactory, telegram_id: int) -> tuple[User, int]:
    """A Telegram user already known to billing (identity + account)."""
    from billable.models import ExternalIdentity

    tg_user = updates.user(telegram_id)
    account = get_user_model().objects.create(username=f"tg{telegram_id}")
    ExternalIdentity.objects.create(provider="telegram", external_id=str(telegram_id),
                                    user=account)
    return tg_user, int(account.pk)


def purchases(updates: UpdateFactory, count: int, *, first_id: int = 810_000,
              tag: str = "") -> list[Purchase]:
    """``count`` buyers, each with a pending order of the 100-credit pack and a signed payload."""
    from bot_kit.payments.invoices import prepare_invoice

    config, found = demo_config(), []
    for index in range(count):
        tg_user, account = customer(updates, first_id + index)
        invoice = prepare_invoice(account, tg_user.id, PACK, config)
        found.append(Purchase(tg_user, invoice.payload, invoice.amount,
                              f"stxFAULT{tag}{first_id + index}"))
    return found


def with_trial(updates: UpdateFactory, telegram_id: int) -> tuple[User, int]:
    """A known customer holding the demo trial (3 predictions)."""
    from billable.services import TransactionService

    tg_user, account = customer(updates, telegram_id)
    TransactionService.grant_offer(account, TRIAL_SKU, source="trial_activation")
    return tg_user, account


def paid_state(bought: Iterable[Purchase]) -> dict[str, Any]:
    """What the database says about these charges (for exactly-once assertions)."""
    from billable.models import ExternalIdentity, Order, QuotaBatch
    from billable.services import TransactionService
    from bot_kit.models import TelegramPayment

    bought = list(bought)
    charges = [p.charge_id for p in bought]
    payments = TelegramPayment.objects.filter(charge_id__in=charges)
    balances = {}
    for purchase in bought:
        owner = ExternalIdentity.get_user_by_identity(str(purchase.tg_user.id), "telegram")
        balances[purchase.charge_id] = int(TransactionService.get_balance(owner.pk, "CREDITS"))
    grants = Counter(QuotaBatch.objects.filter(order_item__order__payment_id__in=charges)
                     .values_list("order_item__order__payment_id", flat=True))
    return {
        "confirmed": payments.filter(status="confirmed").count(),
        "paid_orders": Order.objects.filter(payment_id__in=charges, status="paid").count(),
        "balances": set(balances.values()),
        "grants_per_charge": set(grants.values()) if grants else set(),
    }


def confirmed(bought: Iterable[Purchase]) -> int:
    """How many of these charges are recorded as confirmed (one cheap query)."""
    from bot_kit.models import TelegramPayment

    return TelegramPayment.objects.filter(charge_id__in=[p.charge_id for p in bought],
                                          status="confirmed").count()


def assert_granted_exactly_once(bought: list[Purchase]) -> None:
    state = paid_state(bought)
    assert state == {"confirmed": len(bought), "paid_orders": len(bought),
                     "balances": {PACK_CREDITS}, "grants_per_charge": {1}}, state
    out = StringIO()
    call_command("billable_check_ledger", stdout=out)


def balance(account: int, key: str = PREDICTIONS) -> int:
    from billable.services import TransactionService

    return int(TransactionService.get_balance(account, key))


def inbox_rows() -> list[tuple[Any, ...]]:
    """Every inbox row as ``(update_id, kind, state, attempts, claimed, last_error)``."""
    from bot_kit.models import InboxUpdate

    return list(InboxUpdate.objects.order_by("update_id").values_list(
        "update_id", "kind", "state", "attempts", "claimed_by", "last_error"))


def inbox_states() -> dict[str, int]:
    from bot_kit.models import InboxUpdate

    return dict(Counter(InboxUpdate.objects.values_list("state", flat=True)))


async def post_update(session: aiohttp.ClientSession, url: str, update: Update, *,
                      secret: str | None) -> int:
    """POST like Telegram does; returns the status, or 0 when nothing answered."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    try:
        async with session.post(url, data=json.dumps(update_to_json(update)),
                                headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def deliver_until_acknowledged(url: str, pending: list[Update], *, secret: str,
                                     timeout: float = 60) -> None:  # noqa: ASYNC109
    """Telegram's side of a webhook: redeliver every update until it got a ``200``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while pending:
            statuses = await asyncio.gather(*(post_update(session, url, u, secret=secret)
                                              for u in pending))
            pending = [u for u, status in zip(pending, statuses, strict=True) if status != 200]
            if pending:
                assert loop.time() < deadline, f"{len(pending)} update(s) never acknowledged"
                await asyncio.sleep(0.2)


async def wait_until(check: Any, *, timeout: float = 30, every: float = 0.1,  # noqa: ASYNC109
                     explain: Any = None) -> Any:
    """Poll the sync ``check()`` (run in the ORM thread) until it returns something truthy.

    On timeout the assertion names ``explain()`` (sync, e.g. the state of the inbox).
    """
    from asgiref.sync import sync_to_async

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await sync_to_async(check)()
        if value:
            return value
        if loop.time() > deadline:
            state = await sync_to_async(explain)() if explain is not None else ""
            raise AssertionError(f"timed out waiting for {getattr(check, '__name__', check)}: "
                                 f"{state}")
        await asyncio.sleep(every)
