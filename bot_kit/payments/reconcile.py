"""Reconciliation of recorded Stars payments with Telegram's ``getStarTransactions``.

``compare_charges`` is the pure core: it takes both sides as ``ChargeRecord``s and lists every
difference (a charge only one side knows, a different amount, a refund only one side saw).
``billable_reconcile_stars`` feeds it and exits non-zero when anything differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db.models import Q

from bot_kit.models import TelegramPayment

if TYPE_CHECKING:
    from aiogram import Bot

MISSING_LOCALLY = "missing_locally"
MISSING_IN_TELEGRAM = "missing_in_telegram"
AMOUNT_MISMATCH = "amount_mismatch"
REFUND_MISMATCH = "refund_mismatch"


@dataclass(frozen=True)
class ChargeRecord:
    """One Stars charge as one side sees it."""

    charge_id: str
    amount: int
    refunded: bool = False


@dataclass(frozen=True)
class Difference:
    """A charge on which the two sides disagree."""

    charge_id: str
    kind: str
    ours: ChargeRecord | None
    theirs: ChargeRecord | None

    def describe(self) -> str:
        def side(record: ChargeRecord | None) -> str:
            if record is None:
                return "absent"
            return f"{record.amount} XTR{' refunded' if record.refunded else ''}"

        return f"{self.kind}: {self.charge_id} (ours: {side(self.ours)}; " \
               f"telegram: {side(self.theirs)})"


def _difference(charge_id: str, ours: ChargeRecord | None,
                theirs: ChargeRecord | None) -> Difference | None:
    if ours is None:
        return Difference(charge_id, MISSING_LOCALLY, ours, theirs)
    if theirs is None:
        return Difference(charge_id, MISSING_IN_TELEGRAM, ours, theirs)
    if ours.amount != theirs.amount:
        return Difference(charge_id, AMOUNT_MISMATCH, ours, theirs)
    if ours.refunded != theirs.refunded:
        return Difference(charge_id, REFUND_MISMATCH, ours, theirs)
    return None


def compare_charges(ours: Iterable[ChargeRecord],
                    theirs: Iterable[ChargeRecord]) -> list[Difference]:
    """Every disagreement between our records and Telegram's, ordered by charge id."""
    mine = {r.charge_id: r for r in ours}
    telegram = {r.charge_id: r for r in theirs}
    found = (_difference(cid, mine.get(cid), telegram.get(cid))
             for cid in sorted(mine.keys() | telegram.keys()))
    return [d for d in found if d is not None]


def _is_user(partner: Any) -> bool:
    return partner is not None and getattr(partner, "type", None) == "user"


def telegram_charges(transactions: Iterable[Any]) -> list[ChargeRecord]:
    """``StarTransaction``s → charges: incoming user payments, flagged when refunded."""
    transactions = list(transactions)
    refunded = {t.id for t in transactions if _is_user(t.receiver)}
    return [ChargeRecord(t.id, int(t.amount), t.id in refunded)
            for t in transactions if _is_user(t.source)]


def recorded_charges(since: datetime | None = None, *,
                     bot_id: int | None = None) -> list[ChargeRecord]:
    """Our recorded Stars payments (optionally only those recorded since ``since``); with
    ``bot_id``, only those that bot received (and those of no known bot)."""
    rows = TelegramPayment.objects.filter(currency="XTR")
    if bot_id is not None:
        rows = rows.filter(Q(bot_id__isnull=True) | Q(bot_id=bot_id))
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return [ChargeRecord(charge_id, amount, status == TelegramPayment.Status.REFUNDED)
            for charge_id, amount, status in rows.values_list("charge_id", "total_amount",
                                                               "status")]


async def fetch_star_transactions(bot: Bot, *, since: datetime | None = None,
                                  page_size: int = 100, max_pages: int = 1000) -> list[Any]:
    """All Stars transactions of the bot (paged with ``offset``), optionally since a date."""
    found: list[Any] = []
    for page in range(max_pages):
        batch = await bot.get_star_transactions(offset=page * page_size, limit=page_size)
        found.extend(batch.transactions)
        if len(batch.transactions) < page_size:
            break
    if since is not None:
        found = [t for t in found if t.date >= since]
    return found


async def reconcile(bot: Bot, *, since: datetime | None = None) -> list[Difference]:
    """Fetch both sides and compare them."""
    theirs = telegram_charges(await fetch_star_transactions(bot, since=since))
    bot_id = getattr(bot, "id", None)
    ours = await sync_to_async(recorded_charges)(
        since, bot_id=bot_id if isinstance(bot_id, int) else None)
    return compare_charges(ours, theirs)


__all__ = [
    "ChargeRecord",
    "Difference",
    "compare_charges",
    "fetch_star_transactions",
    "reconcile",
    "recorded_charges",
    "telegram_charges",
]
