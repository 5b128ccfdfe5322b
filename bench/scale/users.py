"""The bot as the number of users it has seen grows: 1,000 → 100,000 (RSS and identity cost).

Accounts with Telegram identities are added in bulk (``bench.scale.data.add_telegram_users``),
then each new user sends one update to a bot built with ``setup_billing`` — its identity cache
has the default bound (``BillingConfig.identity_cache_size``). aiogram's FSM is off: its
in-memory storage keeps an entry for every user ever seen, which is aiogram's memory, not the
kit's. At every checkpoint the process RSS (after a garbage collection) and the cache's size are
recorded; past the bound the RSS must stay flat. At some checkpoints one interleaved
comparison: a bare handler, the kit bot for one cached user, the kit bot for users drawn at
random among all seen (past the bound most are cache misses) and ``consume_quota`` for a random
seen user.
"""

from __future__ import annotations

import gc
import random
import time
from typing import Any

from bench.bots import Feed, deliver, dispatcher, shutdown, start_dispatcher
from bench.common import Recorder, make_product, rss_bytes, service
from bench.interleave import AsyncScenarios, Plan, interleave, repeat
from bench.progress import Progress
from bench.scale.data import add_telegram_users

CHECKPOINTS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
COMPARE_AT = (1_000, 10_000, 100_000)
QUICK_CHECKPOINTS = (200, 500)
QUICK_COMPARE_AT = (500,)
FIRST_TG_ID = 500_000_001
KEY = "USERS_CREDITS"
CHUNK = 1_000


def first_sight(runner: AsyncScenarios, feed: Feed, first: int, count: int) -> float:
    """Send one update from each of ``count`` new users; return updates/s (building excluded)."""
    spent = 0.0
    for start in range(first, first + count, CHUNK):
        stop = min(start + CHUNK, first + count)
        payloads = [feed.payload(FIRST_TG_ID + i, "hi") for i in range(start, stop)]
        started = time.perf_counter()
        runner.run(deliver(feed.dp, feed.bot, payloads))
        spent += time.perf_counter() - started
    return count / spent if spent else 0.0


def user_ids() -> tuple[int, int]:
    """Lowest and highest account id of the Telegram users (contiguous: bulk inserted)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count, Max, Min

    found = get_user_model().objects.filter(username__startswith="tg").aggregate(
        low=Min("id"), high=Max("id"), count=Count("id"))
    if found["high"] - found["low"] + 1 != found["count"]:
        raise RuntimeError("Telegram user ids are not contiguous")
    return found["low"], found["high"]


def compare(rec: Recorder, runner: AsyncScenarios, bots: dict[str, Any], seen: int, *,
            quick: bool) -> dict[str, float]:
    """The interleaved comparison at ``seen`` users; returns the median rates."""
    consume = service("consume_quota")
    draw = random.Random(seen)
    low, high = user_ids()
    feeds = {
        "bare aiogram handler": Feed(bots["bare"], lambda i: FIRST_TG_ID),
        "kit bot, one cached user": Feed(bots["kit"], lambda i: FIRST_TG_ID),
        "kit bot, random seen user": Feed(bots["kit"],
                                          lambda i: FIRST_TG_ID + draw.randrange(seen)),
    }
    scenarios: dict[str, Any] = {name: runner.repeat(feed.send, prepare=feed.prepare)
                                 for name, feed in feeds.items()}
    scenarios["consume_quota, random seen user"] = repeat(
        lambda: consume(draw.randint(low, high), KEY))
    comparison = interleave(scenarios, Plan.for_run(quick=quick, curve=True))
    rec.rates(comparison, "ops/s", label=f"{seen:,} users: ")
    for name in ("kit bot, one cached user", "kit bot, random seen user"):
        rec.ratio(f"{seen:,} users: {name} / bare aiogram handler", comparison, name,
                  "bare aiogram handler")
    return {name: comparison.rate(name).median for name in comparison.rates}


def run(rec: Recorder, *, quick: bool) -> None:
    """Grow the users seen checkpoint by checkpoint; record RSS, cache size and rates."""
    from bot_kit import BillingConfig
    from bot_kit.middlewares.identity import IdentityCache

    config = BillingConfig()
    cache = IdentityCache(config.identity_cache_size)
    product = make_product(KEY)
    checkpoints = QUICK_CHECKPOINTS if quick else CHECKPOINTS
    compare_at = QUICK_COMPARE_AT if quick else COMPARE_AT
    curve: dict[str, Any] = {"users": [], "rss_mb": [], "cache": [], "first sight": [],
                                   "compared at": [], "rates": []}
    with AsyncScenarios() as runner, Progress(f"scale/users [{rec.backend}]",
                                              total=len(checkpoints)) as bar:
        bots = {"bare": dispatcher("bare", fsm=False),
                "kit": dispatcher("kit", config=config, cache=cache, fsm=False)}
        feed = Feed(bots["kit"], lambda i: FIRST_TG_ID + i)
        runner.run(start_dispatcher(bots["kit"], feed.bot))  # the identity listener, first
        person = feed.factory.user(FIRST_TG_ID)
        names = (person.first_name, person.last_name, person.language_code)
        seen = 0
        for checkpoint in checkpoints:
            add_telegram_users(FIRST_TG_ID + seen, checkpoint - seen, product, quantity=10**6,
                               names=names)
            rate = first_sight(runner, feed, seen, checkpoint - seen)
            seen = checkpoint
            gc.collect()
            curve["users"].append(seen)
            curve["rss_mb"].append(round(rss_bytes() / 2**20, 1))
            curve["cache"].append(len(cache))
            curve["first sight"].append(round(rate, 1))
            if seen in compare_at:
                curve["compared at"].append(seen)
                curve["rates"].append(compare(rec, runner, bots, seen, quick=quick))
            bar.tick(status=f"{seen:,} users")
        runner.run(shutdown())
    curve["cache bound"] = config.identity_cache_size
    rec.series["users"] = curve
    for users, rss, size in zip(curve["users"], curve["rss_mb"], curve["cache"], strict=True):
        rec.metric(f"RSS after {users:,} distinct users", rss, "MiB", identity_cache=size)
