"""Bot updates per second through bot_kit, against the same work without it.

Measured in one run, on one database:

* ``bare``      — a Dispatcher with one no-op message handler (aiogram alone);
* ``identity``  — the same handler behind ``setup_billing`` (a known, cached user: one query;
  the kit's own routers — payments, ``/balance``, ``/trial``, ``/paysupport`` — are tried first);
* ``identity_middleware`` — only the identity middleware on ``dp.update`` (no kit routers):
  what the "identity middleware ≥ 50 % of bare" target is about;
* ``identity_trusted`` — the same with ``identity_revalidate_after=1.0`` (no query per update);
* ``gated``     — a ``@requires_quota`` handler (identity + hold + commit per update);
* ``consume``   — ``TransactionService.consume_quota`` called directly (no bot at all);
* ``consume_idempotent`` / ``hold_commit`` — the same with an idempotency key, and
  ``reserve_quota`` + ``commit_reservation`` called directly (the ledger work of one gated
  update), so the report separates the kit's own overhead from the ledger's cost.

Targets: identity ≥ 50 % of bare; gated ≥ 70 % of direct consume_quota.

    python bench/bot.py            # SQLite in a temporary file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python bench/bot.py

(``python -m bench --only bot`` runs it inside the suite via ``run(recorder, quick=...)``.)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402  (the repo root must be importable first)
    Recorder,
    backend_version,
    bench_database,
    configure_django,
    credit,
    machine_info,
    make_product,
    make_users,
    measure_rate,
    ratio,
)

KEY = "BENCH_BOT"
TG_ID = 777_000_001


def dispatcher(kind: str) -> Any:
    """A Dispatcher for one scenario: ``bare``, ``identity``, ``identity_middleware``,
    ``identity_trusted``, ``gated``."""
    from aiogram import Dispatcher, Router
    from aiogram.types import Message

    from bot_kit import BillingConfig, requires_quota, setup_billing
    from bot_kit.middlewares.identity import IdentityMiddleware, _connect_signals

    dp = Dispatcher()
    if kind == "identity_middleware":
        _connect_signals()
        dp.update.outer_middleware(IdentityMiddleware(BillingConfig()))
    elif kind == "identity_trusted":
        setup_billing(dp, BillingConfig(identity_revalidate_after=1.0))
    elif kind != "bare":
        setup_billing(dp, BillingConfig())
    router = Router()
    if kind == "gated":
        @router.message()
        @requires_quota(KEY)
        async def gated(message: Message) -> None:
            return None
    else:
        @router.message()
        async def plain(message: Message) -> None:
            return None
    dp.include_router(router)
    return dp


async def updates_per_second(kind: str, count: int, *, repeats: int = 2) -> float:
    """Best of ``repeats`` rounds of ``count`` fresh updates (built before timing)."""
    from bot_kit.testing import UpdateFactory, make_bot

    dp, bot, factory = dispatcher(kind), make_bot(), UpdateFactory()
    user = factory.user(TG_ID)
    await dp.feed_update(bot, factory.message("warm-up", user=user))
    best = 0.0
    for _ in range(repeats):
        batch = [factory.message("go", user=user) for _ in range(count)]
        started = time.perf_counter()
        for update in batch:
            await dp.feed_update(bot, update)
        best = max(best, count / (time.perf_counter() - started))
    return best


def prepare() -> Any:
    """One user with a Telegram identity and a large balance of ``KEY``."""
    from billable.models import ExternalIdentity

    [user] = make_users(1, prefix="botbench")
    credit(user, make_product(KEY), 10**9)
    ExternalIdentity.objects.create(provider="telegram", external_id=str(TG_ID), user=user)
    return user


def run(recorder: Recorder, *, quick: bool = False) -> None:
    """Measure the four rates and check the two ratios."""
    from django.db import connections

    from billable.services import TransactionService

    count = 50 if quick else 200
    user = prepare()
    rates = {kind: asyncio.run(updates_per_second(kind, count))
             for kind in ("bare", "identity", "identity_middleware", "identity_trusted",
                          "gated")}
    connections.close_all()
    rates["consume"] = measure_rate(
        lambda i: TransactionService.consume_quota(user.pk, KEY), count=count, repeats=2)
    rates["consume_idempotent"] = measure_rate(
        lambda i: TransactionService.consume_quota(user.pk, KEY, idempotency_key=f"b{i}"),
        count=count, repeats=2)
    rates["hold_commit"] = measure_rate(
        lambda i: TransactionService.commit_reservation(TransactionService.reserve_quota(
            user.pk, KEY, 1, idempotency_key=f"h{i}")), count=count, repeats=2)
    for name, value in rates.items():
        recorder.metric(name, value, "ops/s")
    recorder.target("identity / bare",
                    value=ratio(rates["identity_middleware"], rates["bare"]), required=0.5,
                    why="identity middleware with a cached known user")
    recorder.metric("setup_billing identity / bare",
                    ratio(rates["identity"], rates["bare"]) or 0.0, "x")
    recorder.metric("identity_trusted / bare",
                    ratio(rates["identity_trusted"], rates["bare"]) or 0.0, "x")
    recorder.target("gated / consume_quota", value=ratio(rates["gated"], rates["consume"]),
                    required=0.7, why="hold + commit per gated update vs one consume")
    recorder.target("gated / direct reserve+commit",
                    value=ratio(rates["gated"], rates["hold_commit"]), required=0.7,
                    why="what the kit adds on top of the ledger's hold + commit")
    recorder.target("gated / idempotent consume_quota",
                    value=ratio(rates["gated"], rates["consume_idempotent"]), required=0.7,
                    why="same idempotency guarantee on both sides")


def main() -> int:
    """Stand-alone run: a throw-away database, results printed as a small table."""
    url = os.environ.get("DATABASE_URL", "")
    backend = "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"
    recorder = Recorder(benchmark="bot", backend=backend)
    started = time.perf_counter()
    with bench_database(backend, f"bench_bot_{os.getpid()}") as db_url:
        configure_django(db_url)
        recorder.info.update(machine_info(), database=backend_version())
        run(recorder, quick="--quick" in sys.argv or bool(os.environ.get("BENCH_QUICK")))
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(recorder.as_dict(), default=str))
    print(f"bot_kit benchmark on {backend} ({time.perf_counter() - started:.1f} s)")
    for metric in recorder.metrics:
        print(f"  {metric['name']:<20} {metric['value']:>10.1f} {metric['unit']}")
    for target in recorder.targets:
        verdict = "ok" if target["passed"] else "BELOW TARGET"
        print(f"  {target['name']:<34} {target['value']!s:>6} (target ≥ {target['required']})"
              f"  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
