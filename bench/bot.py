"""Bot updates through bot_kit against the same work without it, interleaved in one loop.

Two comparisons (bots from ``bench.bots``; every update comes from one known, cached user):

* **identity** — ``bare`` aiogram vs the ``identity`` middleware alone (target line
  ``identity``), with the whole kit (``setup_billing``) beside them for reference;
* **gating** — a ``gated`` update (hold, handler, charge) vs ``consume_quota`` called directly
  (target line ``gated``), with the keyed ``consume_quota`` (the same idempotency guarantee as
  a gated update) beside them, and two lines that split the gap: the hold and settle alone
  through ``HoldService`` (the engine's share, no bot) and a ``charged`` update (the same bot
  charging by hand with ``aconsume_quota``: aiogram's and the kit's share, one statement).
  On PostgreSQL a ``gated floor`` beside them: aiogram alone sending the fast path's own two
  statements on one raw connection (``bench.bots.GatedFloor``) — what a gated update costs
  with nothing of the kit around its SQL, the gated line's physical-limit baseline.

Async scenarios share one event loop that runs only during their slices, so the direct
``consume_quota`` (sync ORM) runs between them in the same loop of the instrument. Updates are
fed as production feeds them (JSON parsed bound to the bot, ``bench.bots.Feed``).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bots import KNOWN_TG_ID, Feed, dispatcher, prepare_known_user, shutdown
from bench.common import Recorder, service
from bench.interleave import AsyncScenarios, Plan, interleave, repeat
from bench.progress import Progress

KEY = "BENCH_BOT"
FLOOR = "gated floor (bare aiogram, two statements on a raw connection)"


def feeds(kinds: tuple[str, ...], runner: AsyncScenarios) -> dict[str, Any]:
    """A feed of updates from the known user per bot kind, each warmed up with one update."""
    made = {kind: Feed(dispatcher(kind, key=KEY), lambda i: KNOWN_TG_ID) for kind in kinds}
    for feed in made.values():
        runner.run(feed.send())
    return made


async def hold_and_settle(user_id: Any, key: str) -> None:
    """A gated update's engine work alone: the hold under the update's key, then its
    settlement (what ``QuotaMiddleware`` asks of ``HoldService`` around the handler)."""
    from billable.services.holds import HoldService

    placed = await HoldService.aplace(user_id, KEY, 1, idempotency_key=key)
    await HoldService.acommit(placed.reservation_id, read_balance=False)


def run(rec: Recorder, *, quick: bool) -> None:
    """Measure both comparisons and record their ratios."""
    consume = service("consume_quota")
    user = prepare_known_user(KEY)
    plan = Plan.for_run(quick=quick)
    keys = itertools.count()
    with AsyncScenarios() as runner, Progress(f"bot [{rec.backend}, {rec.mode}]",
                                              total=2 * plan.rounds) as bar:
        postgres = rec.backend == "postgresql"
        kinds = ("bare", "identity", "kit", "gated", "charged") + (("floor",) if postgres else ())
        bots = feeds(kinds, runner)

        def updates(kind: str) -> Any:
            return runner.repeat(bots[kind].send, prepare=bots[kind].prepare)

        identity = interleave({
            "bare aiogram handler": updates("bare"),
            "identity middleware": updates("identity"),
            "setup_billing (identity + kit routers)": updates("kit"),
        }, plan, tick=bar.tick)
        compared = {
            "gated update": updates("gated"),
            "consume_quota": repeat(lambda: consume(user.pk, KEY)),
            "keyed consume_quota": repeat(
                lambda: consume(user.pk, KEY, idempotency_key=f"bot-{next(keys)}")),
            "hold + settle (HoldService, no bot)": runner.repeat(
                lambda: hold_and_settle(user.pk, f"hs-{next(keys)}")),
            "charged update (aconsume_quota by hand)": updates("charged"),
        }
        if postgres:
            compared[FLOOR] = updates("floor")
        gating = interleave(compared, plan, tick=bar.tick)
        runner.run(shutdown())
    rec.rates(identity, "updates/s")
    rec.rates(gating, "ops/s")
    rec.ratio("identity middleware / bare aiogram handler", identity, "identity middleware",
              "bare aiogram handler", target="identity",
              why="a thread hop and one indexed query per update for a cached user")
    rec.ratio("setup_billing / bare aiogram handler", identity,
              "setup_billing (identity + kit routers)", "bare aiogram handler")
    rec.ratio("gated update / consume_quota", gating, "gated update", "consume_quota",
              target="gated", why="hold and charge: two one-statement transactions on the "
              "async pool and aiogram's dispatch through the kit around one handler")
    rec.ratio("gated update / keyed consume_quota", gating, "gated update",
              "keyed consume_quota")
    rec.ratio("hold + settle (no bot) / consume_quota", gating,
              "hold + settle (HoldService, no bot)", "consume_quota")
    rec.ratio("gated update / charged update", gating, "gated update",
              "charged update (aconsume_quota by hand)")
    if postgres:
        rec.ratio("gated floor (bare aiogram + the two statements) / consume_quota", gating,
                  FLOOR, "consume_quota")
        rec.ratio("gated update / gated floor", gating, "gated update", FLOOR)
    rec.info["updates sent"] = {kind: feed.sent for kind, feed in bots.items()}


if __name__ == "__main__":
    from bench.__main__ import run_alone

    sys.exit(run_alone("bot", sys.argv[1:]))
