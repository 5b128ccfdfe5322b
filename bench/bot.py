"""Bot updates through bot_kit against the same work without it, interleaved in one loop.

Two comparisons (bots from ``bench.bots``; every update comes from one known, cached user):

* **identity** — ``bare`` aiogram vs the ``identity`` middleware alone (target line
  ``identity``), with the whole kit (``setup_billing``) beside them for reference;
* **gating** — a ``gated`` update (hold, handler, charge) vs ``consume_quota`` called directly
  (target line ``gated``), with the keyed ``consume_quota`` (the same idempotency guarantee as
  a gated update) beside them.

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


def feeds(kinds: tuple[str, ...], runner: AsyncScenarios) -> dict[str, Any]:
    """A feed of updates from the known user per bot kind, each warmed up with one update."""
    made = {kind: Feed(dispatcher(kind, key=KEY), lambda i: KNOWN_TG_ID) for kind in kinds}
    for feed in made.values():
        runner.run(feed.send())
    return made


def run(rec: Recorder, *, quick: bool) -> None:
    """Measure both comparisons and record their ratios."""
    consume = service("consume_quota")
    user = prepare_known_user(KEY)
    plan = Plan.for_run(quick=quick)
    keys = itertools.count()
    with AsyncScenarios() as runner, Progress(f"bot [{rec.backend}, {rec.mode}]",
                                              total=2 * plan.rounds) as bar:
        bots = feeds(("bare", "identity", "kit", "gated"), runner)

        def updates(kind: str) -> Any:
            return runner.repeat(bots[kind].send, prepare=bots[kind].prepare)

        identity = interleave({
            "bare aiogram handler": updates("bare"),
            "identity middleware": updates("identity"),
            "setup_billing (identity + kit routers)": updates("kit"),
        }, plan, tick=bar.tick)
        gating = interleave({
            "gated update": updates("gated"),
            "consume_quota": repeat(lambda: consume(user.pk, KEY)),
            "keyed consume_quota": repeat(
                lambda: consume(user.pk, KEY, idempotency_key=f"bot-{next(keys)}")),
        }, plan, tick=bar.tick)
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
    rec.info["updates sent"] = {kind: feed.sent for kind, feed in bots.items()}


if __name__ == "__main__":
    from bench.__main__ import run_alone

    sys.exit(run_alone("bot", sys.argv[1:]))
