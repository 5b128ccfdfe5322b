"""Fixtures of the REST API tests.

``api`` is parametrized: every test using it runs twice, once through
``ninja.testing.TestAsyncClient(router)`` with router-relative paths, once through Django's
``AsyncClient`` on the URLs mounted by ``tests/urls.py`` (``include("billable.urls")`` at
``/api/v1/billing/``). Both share one small interface, :class:`Api`.

Async tests are decorated with :func:`in_main_thread`: the coroutine runs under
``async_to_sync``, so every ``sync_to_async`` call (services, async ORM) executes in the test's
own thread and database connection. The ordinary rolled-back ``db`` fixture is then enough;
only the concurrency and end-to-end tests need committed data.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient
from ninja.testing import TestAsyncClient

from billable.api import router
from tests.billable.api.peer_support import Peer, Shop, build_shop

MOUNT = "/api/v1/billing"


def in_main_thread(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with ``async_to_sync`` (see the module docstring)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        async_to_sync(test)(*args, **kwargs)

    return run


@dataclass
class Reply:
    """Status, parsed JSON body and headers of one API response."""

    status_code: int
    body: Any
    headers: dict[str, str]

    def json(self) -> Any:
        return self.body


def _query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    return "?" + urlencode(params, doseq=True)


class Api:
    """One request interface over the two clients."""

    def __init__(self, kind: str, token: str | None) -> None:
        self.kind = kind
        self.auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self._ninja = TestAsyncClient(router, headers=self.auth)
        self._django = AsyncClient()

    async def get(self, path: str, **params: Any) -> Reply:
        return await self.request("GET", path + _query(params))

    async def post(self, path: str, payload: Any = None, *, raw: bytes | None = None) -> Reply:
        body = raw if raw is not None else json.dumps({} if payload is None else payload)
        return await self.request("POST", path, body)

    async def request(self, method: str, path: str, body: Any = None) -> Reply:
        if self.kind == "router":
            response = await self._ninja.request(method, path, data=body or None)
        else:
            call = self._django.get if method == "GET" else self._django.post
            kwargs: dict[str, Any] = {"headers": self.auth}
            if method == "POST":
                kwargs.update(data=body, content_type="application/json")
            response = await call(MOUNT + path, **kwargs)
        content = response.content
        parsed = json.loads(content) if content else None
        return Reply(response.status_code, parsed, dict(response.headers.items()))


@pytest.fixture(params=["router", "django"])
def api(request: pytest.FixtureRequest, db: None) -> Api:
    """An authenticated API client (run once per client kind)."""
    return Api(request.param, settings.BILLABLE_API_TOKEN)


@pytest.fixture
def anonymous_api(request: pytest.FixtureRequest) -> Callable[..., Api]:
    """Builder of clients with any token (``None`` sends no header)."""

    def build(kind: str, token: str | None = None) -> Api:
        return Api(kind, token)

    return build


@pytest.fixture
def tokens(make_product: Callable[..., Any]) -> Any:
    return make_product("TOKENS", name="AI Tokens")


@pytest.fixture
def premium(make_product: Callable[..., Any]) -> Any:
    from billable.models import Product

    return make_product("PREMIUM", name="Premium Access", product_type=Product.ProductType.PERIOD)


@pytest.fixture
def credits(make_product: Callable[..., Any]) -> Any:
    return make_product("INTERNAL", name="Internal Credits", is_currency=True)


@pytest.fixture
def bundle(make_offer: Callable[..., Any], tokens: Any, premium: Any) -> Any:
    """``PACK_STARTER``: 100 tokens + 30 days premium for 20.00 USD."""
    return make_offer("pack_starter", name="Starter Bundle", price=Decimal("20.00"),
                      items=[(tokens, 100), (premium, 1, "days", 30)])


@pytest.fixture
def credit_pack(make_offer: Callable[..., Any], credits: Any) -> Any:
    """``OFF_CREDITS_100``: 100 internal credits for 10.00 USD."""
    return make_offer("off_credits_100", name="100 Credits", price=Decimal("10.00"),
                      items=[(credits, 100)])


@pytest.fixture
def grant(db: None) -> Callable[..., Any]:
    """``grant(user, offer)``: give a user an offer through the ledger service."""
    from billable.services import TransactionService

    def run(user: Any, offer: Any, **kwargs: Any) -> Any:
        return TransactionService.grant_offer(user.pk, offer, **kwargs)

    return run


@pytest.fixture
def peer() -> Peer:
    """The peer suite's client (Django's test client on the mounted URLs)."""
    return Peer()


@pytest.fixture
def shop() -> Shop:
    """The peer suite's demo catalog."""
    return build_shop()
