"""The lean ASGI stack of the API (``billable.api.asgi.lean_api``) against Django's full one.

Both applications are driven with raw ASGI messages in one event loop, as uvicorn would: the
full stack is Django's ``ASGIHandler`` with the test project's middleware, the lean one wraps
it. Requests run their synchronous work in the handlers' own threads (their own database
connections), so the data is committed (``transaction=True``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asgiref.sync
import pytest
from django.core.handlers.asgi import ASGIHandler

from billable.api import ROUTE_SCOPES
from billable.api.asgi import APIHandler, lean_api, normalize_prefix
from billable.models import IdempotencyKey, Product, QuotaBatch, Transaction
from billable.services.api_keys import create_api_key, revoke_api_key

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "test-token-0123456789abcdef"
MOUNT = "/api/v1/billing"
#: Most thread hops a successful ``POST /wallet/consume`` may make on the lean stack with the
#: settings token: ``request_started``, the consume, ``request_finished``.
LEAN_CONSUME_HOPS = 3


async def call(app: Any, method: str, path: str, body: Any = None, *,
               token: str | None = TOKEN, host: str = "testserver"
               ) -> tuple[int, Any, dict[str, str]]:
    """One request through an ASGI application: status, parsed body, headers."""
    raw = b"" if body is None else json.dumps(body).encode()
    path, _, query = path.partition("?")
    headers = [(b"host", host.encode()), (b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    inbox = [{"type": "http.request", "body": raw, "more_body": False}]
    sent: list[dict[str, Any]] = []
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    start = sent[0]
    content = b"".join(m.get("body", b"") for m in sent[1:])
    head = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    try:
        parsed: Any = json.loads(content) if content else None
    except ValueError:
        parsed = content.decode(errors="replace")
    return start["status"], parsed, head


@pytest.fixture
def apps() -> tuple[Any, Any]:
    full = ASGIHandler()
    return full, lean_api(full, prefix=MOUNT)


@contextmanager
def counting_hops() -> Iterator[Counter[str]]:
    """Count ``sync_to_async`` and ``async_to_sync`` calls (thread hand-offs)."""
    hops: Counter[str] = Counter()
    to_thread, to_loop = asgiref.sync.SyncToAsync.__call__, asgiref.sync.AsyncToSync.__call__

    async def counted_to_thread(self: Any, *args: Any, **kwargs: Any) -> Any:
        hops["sync_to_async"] += 1
        return await to_thread(self, *args, **kwargs)

    def counted_to_loop(self: Any, *args: Any, **kwargs: Any) -> Any:
        hops["async_to_sync"] += 1
        return to_loop(self, *args, **kwargs)

    asgiref.sync.SyncToAsync.__call__ = counted_to_thread  # type: ignore[method-assign]
    asgiref.sync.AsyncToSync.__call__ = counted_to_loop  # type: ignore[method-assign]
    try:
        yield hops
    finally:
        asgiref.sync.SyncToAsync.__call__ = to_thread  # type: ignore[method-assign]
        asgiref.sync.AsyncToSync.__call__ = to_loop  # type: ignore[method-assign]


def wallet(django_user_model: Any, name: str, units: int = 100) -> int:
    """A user holding ``units`` of ``LEAN``; returns the user id."""
    product, _ = Product.objects.get_or_create(product_key="LEAN", defaults={"name": "Lean"})
    user = django_user_model.objects.create(username=name)
    QuotaBatch.objects.create(user=user, product=product, initial_quantity=units,
                              remaining_quantity=units)
    return int(user.pk)


def fill(path: str) -> str:
    """A route template with placeholder values (``{order_id}`` → an unknown id)."""
    values = {"order_id": "00000000-0000-0000-0000-000000000000", "sku": "NOPE",
              "product_key": "NOPE", "token": "nope"}
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), "x"), path)


def test_every_route_answers_the_same_through_both_stacks(apps: tuple[Any, Any]) -> None:
    """No token, the settings token, a key without the scope: same status, body, content type
    for every route (with an empty body / no query, so nothing is written)."""
    _, narrow = create_api_key("narrow", ["catalog:read"])
    full, lean = apps

    async def compare() -> None:
        for method, route in sorted(ROUTE_SCOPES):
            body = {} if method == "POST" else None
            for token in (None, TOKEN, narrow):
                url = MOUNT + fill(route)
                a, b = (await call(full, method, url, body, token=token),
                        await call(lean, method, url, body, token=token))
                assert a[:2] == b[:2], (method, route, token)
                assert a[2].get("content-type") == b[2].get("content-type"), (method, route)
                assert a[0] != 500, (method, route, a)

    asyncio.run(compare())


def test_consume_answers_the_same_through_both_stacks(apps: tuple[Any, Any],
                                                      django_user_model: Any) -> None:
    full, lean = apps
    first, second = wallet(django_user_model, "a"), wallet(django_user_model, "b")

    def same(reply: tuple[int, Any, dict[str, str]]) -> tuple[int, Any]:
        status, body = reply[:2]
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body["data"].pop("usage_id", None)
        return status, body

    async def compare() -> None:
        cases: list[tuple[str, str, Any]] = [
            ("POST", "/wallet/consume", {"product_key": "lean", "amount": 3}),
            ("POST", "/wallet/consume", {"product_key": "LEAN", "amount": 1000}),
            ("POST", "/wallet/consume", {"product_key": "OTHER"}),
            ("POST", "/wallet/consume", {"product_key": "LEAN", "idempotency_key": "k1"}),
            ("POST", "/wallet/consume", {"product_key": "LEAN", "idempotency_key": "k1"}),
            ("POST", "/wallet/consume", {"product_key": "LEAN", "idempotency_key": "k1",
                                         "amount": 2}),
            ("GET", "/wallet?user_id={uid}", None),
            ("GET", "/balance?product_key=LEAN&user_id={uid}", None),
        ]
        for method, path, body in cases:
            replies = []
            for app, uid in ((full, first), (lean, second)):
                payload = {**body, "user_id": uid} if body is not None else None
                reply = same(await call(app, method, MOUNT + path.format(uid=uid), payload))
                if isinstance(reply[1], dict):
                    reply[1].pop("user_id", None)
                replies.append(reply)
            assert replies[0] == replies[1], (method, path, body)

    asyncio.run(compare())


@pytest.mark.parametrize("idempotency_key", [None, "retry-1"])
def test_unknown_user_is_404_and_nothing_is_written(apps: tuple[Any, Any],
                                                    django_user_model: Any,
                                                    idempotency_key: str | None) -> None:
    """The user check after a refused consume keeps the 404 and writes nothing."""
    wallet(django_user_model, "owner")
    _, lean = apps
    body = {"user_id": 987654321, "product_key": "LEAN", "idempotency_key": idempotency_key}
    for payload in (body, {**body, "amount": 0}, {**body, "product_key": "NOPE"}):
        status, reply, _ = asyncio.run(call(lean, "POST", f"{MOUNT}/wallet/consume", payload))
        assert status in (404, 422), reply
        if status == 404:
            assert reply["message"] == "User not found"
    assert not Transaction.objects.filter(user_id=987654321).exists()
    assert not IdempotencyKey.objects.filter(user_id=987654321).exists()


def test_revoked_key_is_refused_on_the_next_request(apps: tuple[Any, Any],
                                                    django_user_model: Any) -> None:
    uid = wallet(django_user_model, "keyed")
    key, token = create_api_key("shop", ["wallet:consume", "wallet:read"])
    _, lean = apps
    consume = {"user_id": uid, "product_key": "LEAN"}
    assert asyncio.run(call(lean, "POST", f"{MOUNT}/wallet/consume", consume,
                            token=token))[0] == 200
    assert revoke_api_key(key.pk) is True
    status, body, _ = asyncio.run(call(lean, "POST", f"{MOUNT}/wallet/consume", consume,
                                       token=token))
    assert (status, body) == (401, {"detail": "Unauthorized"})
    assert QuotaBatch.objects.get(user_id=uid).remaining_quantity == 99


def test_a_host_not_in_allowed_hosts_is_refused_and_nothing_is_charged(
        apps: tuple[Any, Any], django_user_model: Any, settings: Any) -> None:
    """The lean stack skips the host's middleware but keeps Django's ``ALLOWED_HOSTS`` check
    (``CommonMiddleware`` does it on the full stack): both answer 400 to an unknown host."""
    settings.ALLOWED_HOSTS = ["testserver"]
    uid = wallet(django_user_model, "hosts")
    body = {"user_id": uid, "product_key": "LEAN"}
    for app in apps:
        status, _, _ = asyncio.run(call(app, "POST", f"{MOUNT}/wallet/consume", body,
                                        host="evil.example"))
        assert status == 400
    assert QuotaBatch.objects.get(user_id=uid).remaining_quantity == 100
    assert asyncio.run(call(apps[1], "POST", f"{MOUNT}/wallet/consume", body))[0] == 200


def test_consume_hops_are_bounded(apps: tuple[Any, Any], django_user_model: Any) -> None:
    """A successful consume: at most three thread hops on the lean stack; the full stack adds
    two per sync-style middleware of the host."""
    uid = wallet(django_user_model, "hops")
    full, lean = apps
    body = {"user_id": uid, "product_key": "LEAN"}
    counts = {}
    for name, app in (("full", full), ("lean", lean)):
        asyncio.run(call(app, "POST", f"{MOUNT}/wallet/consume", body))  # warm
        with counting_hops() as hops:
            status, reply, _ = asyncio.run(call(app, "POST", f"{MOUNT}/wallet/consume", body))
        assert status == 200, reply
        counts[name] = hops["sync_to_async"] + hops["async_to_sync"]
    assert counts["lean"] <= LEAN_CONSUME_HOPS, counts
    assert counts["full"] > counts["lean"], counts


def test_request_threads_are_reused(apps: tuple[Any, Any], django_user_model: Any) -> None:
    uid = wallet(django_user_model, "threads")
    _, lean = apps
    handler: APIHandler = lean.api_handler

    async def run() -> list[int]:
        body = {"user_id": uid, "product_key": "LEAN"}
        for _ in range(3):
            assert (await call(lean, "POST", f"{MOUNT}/wallet/consume", body))[0] == 200
        # concurrent requests each get a thread of their own
        replies = await asyncio.gather(*(call(lean, "POST", f"{MOUNT}/wallet/consume", body)
                                         for _ in range(4)))
        return [reply[0] for reply in replies]

    statuses = asyncio.run(run())
    assert statuses == [200] * 4
    assert 1 <= len(handler._idle) <= 4
    assert QuotaBatch.objects.get(user_id=uid).remaining_quantity == 93


def test_other_paths_and_the_docs_stay_on_the_host_stack(apps: tuple[Any, Any]) -> None:
    """Outside the prefix, and the docs under it, the host's middleware still runs (here:
    the session middleware's ``Vary: Cookie`` on the admin login page)."""
    full, _ = apps
    seen: list[str] = []

    async def host(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await full(scope, receive, send)

    app = lean_api(host, prefix="api/v1/billing")
    asyncio.run(call(app, "GET", "/admin/login/", token=None))
    status, _, _ = asyncio.run(call(app, "GET", f"{MOUNT}/openapi.json"))
    asyncio.run(call(app, "GET", f"{MOUNT}/catalog"))
    assert seen == ["/admin/login/", f"{MOUNT}/openapi.json"]
    assert status == 200
    assert normalize_prefix("api/v1/billing") == "/api/v1/billing/"
