"""Fixtures for bot tests: a fake Bot API session, update builders and a wired Dispatcher.

Async tests that touch the database use ``@pytest.mark.django_db(transaction=True)``: the
billing services run in ``sync_to_async``'s worker thread, which must see committed data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router

from bot_kit.config import BillingConfig
from bot_kit.middlewares import identity as identity_module
from bot_kit.middlewares.identity import IdentityCache, IdentityListener
from bot_kit.setup import setup_billing
from bot_kit.testing import FakeSession, UpdateFactory, make_bot


@pytest.fixture
def updates() -> UpdateFactory:
    return UpdateFactory()


@pytest.fixture
def session() -> Iterator[FakeSession]:
    """A strict fake session; the test fails when Telegram would have refused one of its calls
    (a test that provokes a refusal on purpose clears ``session.refused`` after checking it)."""
    fake = FakeSession()
    yield fake
    assert fake.refused == [], f"Telegram would refuse these calls: {fake.refused}"


@pytest.fixture
def bot(session: FakeSession) -> Bot:
    return make_bot(session)


@pytest.fixture
def make_dp() -> Callable[..., Dispatcher]:
    """Builder: ``make_dp(config, router)`` → a Dispatcher with billing set up, host router last."""

    def build(config: BillingConfig | None = None, *routers: Router,
              cache: IdentityCache | None = None) -> Dispatcher:
        dp = Dispatcher()
        setup_billing(dp, config or BillingConfig(), cache=cache)
        for router in routers:
            dp.include_router(router)
        return dp

    return build


@pytest.fixture
def catalog(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> dict[str, Any]:
    """``PREDICTIONS`` (quantity) sold as ``PACK_10`` (50 ⭐) and given as ``TRIAL_3`` (free);
    ``OTHER`` sold as ``OTHER_5`` (4.99 USD)."""
    predictions = make_product("PREDICTIONS", name="Predictions")
    other = make_product("OTHER", name="Other")
    return {
        "product": predictions,
        "pack": make_offer("PACK_10", items=[(predictions, 10)], price="50", currency="XTR",
                           name="10 predictions"),
        "trial": make_offer("TRIAL_3", items=[(predictions, 3)], price="0", name="Trial"),
        "other": make_offer("OTHER_5", items=[(other, 5)], price="4.99", currency="USD",
                            name="5 others"),
    }


@pytest.fixture
def grant() -> Callable[..., Any]:
    """``await grant(user_id, offer)`` (async, through the service)."""
    from billable.services import TransactionService

    async def give(user_id: int, offer: Any) -> list[Any]:
        batches: list[Any] = await TransactionService.agrant_offer(user_id, offer,
                                                                   source="manual_grant")
        return batches

    return give


@pytest.fixture
async def listener(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[IdentityListener]:
    """A fresh process listener, started on the test's loop and connected."""
    fresh = IdentityListener(retry_after=0.3)
    monkeypatch.setattr(identity_module, "LISTENER", fresh)
    await fresh.start()
    assert await fresh.wait_live()
    payloads: list[str] = []
    apply = fresh.apply

    def recording(payload: str) -> None:
        payloads.append(payload)
        apply(payload)

    fresh.apply = recording  # type: ignore[method-assign]
    fresh.payloads = payloads  # type: ignore[attr-defined]
    yield fresh
    await fresh.stop()


@pytest.fixture
def idle(monkeypatch: pytest.MonkeyPatch) -> IdentityListener:
    """A process listener that was never started."""
    fresh = IdentityListener()
    monkeypatch.setattr(identity_module, "LISTENER", fresh)
    return fresh
