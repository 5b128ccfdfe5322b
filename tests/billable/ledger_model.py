"""A reference model of several wallets, for the ledger state machine (test_ledger_properties).

Deliberately naive: plain dicts of balances, lists of access intervals and sets of trial users,
updated by what each operation *should* do according to docs/ledger.md and docs/orders.md.
The state machine compares the real services with it after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: Counters (quantity products) the model tracks, and the entitlements.
COUNTERS = ("A", "B", "COIN", "T")
PERIOD, UNLIMITED = "P", "U"


@dataclass
class Interval:
    """One period grant: access from ``start`` to ``end``; ``order`` when it came from one."""

    start: datetime
    end: datetime
    order: int | None = None


@dataclass
class Wallet:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    periods: list[Interval] = field(default_factory=list)
    unlimited: list[int | None] = field(default_factory=list)  # one entry per grant (order pk)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)

    def access_end(self, now: datetime) -> datetime | None:
        """End of the access that runs without a hole from ``now`` (None: no access now)."""
        end = None
        for interval in sorted(self.periods, key=lambda i: i.start):
            if interval.end <= now:
                continue
            if interval.start > (end or now):
                break
            end = max(end or now, interval.end)
        return end

    def chain_end(self, now: datetime) -> datetime:
        """Where a new period starts: the latest end of any access still to come, or now."""
        ends = [i.end for i in self.periods if i.end > now]
        return max([now, *ends])


def chain_after(into: Wallet, periods: list[Interval], now: datetime) -> list[Interval]:
    """A merge queues the source's remaining periods after the target's access (docs/orders.md,
    *Customer merge*), each keeping the time it had left; nothing moves when the target has no
    running or queued access."""
    if not any(i.end > now for i in into.periods):
        return periods
    cursor = into.chain_end(now)
    for interval in sorted(periods, key=lambda i: i.start):
        if interval.end <= now:
            continue
        length = interval.end - max(interval.start, now)
        interval.start, interval.end = cursor, cursor + length
        cursor = interval.end
    return periods


@dataclass
class Model:
    wallets: dict[Any, Wallet]
    trial_used: set[Any] = field(default_factory=set)
    holds: dict[str, tuple[Any, str, int]] = field(default_factory=dict)
    orders: dict[int, Any] = field(default_factory=dict)  # order pk → owner

    def grant_period(self, user: Any, days: int, now: datetime, order: int | None) -> None:
        wallet = self.wallets[user]
        start = wallet.chain_end(now)
        wallet.periods.append(Interval(start, start + timedelta(days=days), order))

    def refund_periods(self, user: Any, order: int, now: datetime) -> None:
        """Drop the order's periods, then let the queued ones close the gaps (docs/orders.md)."""
        wallet = self.wallets[user]
        wallet.periods = [i for i in wallet.periods if i.order != order and i.end > now]
        cursor = now
        for interval in sorted(wallet.periods, key=lambda i: i.start):
            if interval.start > cursor:
                shift = interval.start - cursor
                interval.start -= shift
                interval.end -= shift
            cursor = max(cursor, interval.end)
        wallet.unlimited = [o for o in wallet.unlimited if o != order]

    def merge(self, target: Any, source: Any, now: datetime | None = None) -> None:
        into, out = self.wallets[target], self.wallets[source]
        for key, amount in out.counters.items():
            into.counters[key] += amount
        into.periods += chain_after(into, out.periods, now or datetime.now(UTC))
        into.unlimited += out.unlimited
        for key, request in out.keys.items():
            into.keys.setdefault(key, request)
        self.wallets[source] = Wallet(keys=dict(out.keys))  # the source keeps its keys
        if target in self.trial_used or source in self.trial_used:
            self.trial_used |= {target, source}
        self.holds = {rid: (target if owner == source else owner, key, n)
                      for rid, (owner, key, n) in self.holds.items()}
        self.orders = {pk: target if owner == source else owner
                       for pk, owner in self.orders.items()}


__all__ = ["COUNTERS", "PERIOD", "UNLIMITED", "Interval", "Model", "Wallet"]
