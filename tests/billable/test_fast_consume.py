"""The async consume (one statement on the async pool, in the event loop) against the general
path: the same answers, ledger rows, batch states, idempotency keys and signals, on twin
wallets; the fallback wherever the statement does not apply; and ``POST /wallet/consume``
taking it without changing a byte of its answers or its user rules."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from billable.events.outbox import subscribed_types
from billable.ledger import apool, spend
from billable.models import (
    EventEndpoint,
    ExternalIdentity,
    IdempotencyKey,
    Product,
    QuotaBatch,
    Transaction,
)
from billable.services import TransactionService
from tests.billable.ledger_support import make_batch
from tests.billable.test_ledger_first_lot import (
    KEY,
    SCENARIOS,
    _plain,
    _row,
    _state,
    _wallet,
    race_for_one_wallet,
)
from tests.helpers import is_postgres, requires_postgres

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "test-token-0123456789abcdef"  # tests/settings.py
MOUNT = "/api/v1/billing"


@pytest.fixture(autouse=True)
def no_cached_endpoints() -> Any:
    """Forget endpoints an earlier test cached (a flush does not clear the cache)."""
    subscribed_types.clear()
    yield
    subscribed_types.clear()


@pytest.fixture
def general(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the general path's consumes (the async statement makes none)."""
    calls = {"consume": 0}
    consume = spend.consume

    def counted(**kwargs: Any) -> Any:
        calls["consume"] += 1
        return consume(**kwargs)

    monkeypatch.setattr(spend, "consume", counted)
    return calls


def aconsume(user_id: Any, **call: Any) -> dict[str, Any]:
    """``aconsume_quota`` in its own event loop (as a bot or the API server calls it)."""
    return asyncio.run(TransactionService.aconsume_quota(user_id, KEY, **call))


def _keys(user: Any) -> list[tuple[Any, ...]]:
    return sorted((k.key, k.operation, k.fingerprint, k.result["metadata"])
                  for k in IdempotencyKey.objects.filter(user=user))


def _run(user: Any, order: list[Any], calls: list[dict[str, Any]],
         heard: list[tuple[str, Any]]) -> dict[str, Any]:
    heard.clear()
    usage_ids: dict[str, int] = {}
    results = [_plain(aconsume(user.pk, **call), usage_ids) for call in calls]
    signals = [(name, _row(row, order)) for name, row in heard]
    return {"results": results, "signals": signals, "keys": _keys(user),
            **_state(user, order)}


def _both_paths(make_user: Any, product: Any, batches: Any, calls: list[dict[str, Any]],
                heard: list[tuple[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same calls on twin wallets: the async statement on, then off (the general path)."""
    fast_user, general_user = make_user(), make_user()
    fast_order = _wallet(fast_user, product, batches)
    general_order = _wallet(general_user, product, batches)
    fast = _run(fast_user, fast_order, calls, heard)
    with override_settings(BILLABLE_ASYNC_CONSUME=False):
        slow = _run(general_user, general_order, calls, heard)
    return fast, slow


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_statement_and_the_general_path_write_the_same(name, make_user, make_product,
                                                          heard, general):
    batches, calls = SCENARIOS[name]
    product = make_product(KEY)
    fast, slow = _both_paths(make_user, product, batches, calls, heard)

    assert fast == slow
    assert fast["ledger"] == []


@requires_postgres
def test_a_covered_consume_takes_no_general_path(make_user, make_product, general, heard):
    product = make_product(KEY)
    user = make_user()
    make_batch(user, product, 10)
    first = aconsume(user.pk, amount=3, action_id="a-1", metadata={"m": 1})
    keyed = aconsume(user.pk, amount=2, idempotency_key="k-1")
    assert general["consume"] == 0
    assert first["remaining"] == 7 and keyed["remaining"] == 5
    replay = aconsume(user.pk, amount=2, idempotency_key="k-1")  # the general path replays
    assert general["consume"] == 1
    assert replay["usage_id"] == keyed["usage_id"] and "idempotent" in replay["message"]
    assert [name for name, _ in heard] == ["created", "consumed"] * 2
    assert TransactionService.check_ledger() == []


@requires_postgres
@pytest.mark.parametrize("order", ["fifo", "expiring_first"])
def test_the_consumption_order_is_kept(order, make_user, make_product, heard, settings):
    settings.BILLABLE_CONSUMPTION_ORDER = order
    product = make_product(KEY)
    batches = [(5, {"age_days": 3}), (5, {"age_days": 2, "expires_in_days": 5}),
               (5, {"age_days": 1, "expires_in_days": 2})]
    calls = [{"amount": 2}, {"amount": 3, "idempotency_key": "x"}, {"amount": 4}, {"amount": 6}]
    fast, slow = _both_paths(make_user, product, batches, calls, heard)
    assert fast == slow


def test_entitlements_keep_the_general_path(make_user, make_product, heard, general):
    product = make_product(KEY, product_type=Product.ProductType.PERIOD)
    batches = [(1, {"age_days": 1, "expires_in_days": 3})]
    calls = [{"amount": 4}, {"amount": 1, "idempotency_key": "p"}]
    fast, slow = _both_paths(make_user, product, batches, calls, heard)
    assert fast == slow
    assert general["consume"] == 4


@requires_postgres
def test_a_short_keyed_consume_leaves_no_key(user, make_product, general):
    product = make_product(KEY)
    make_batch(user, product, 2, age_days=2)
    make_batch(user, product, 2, age_days=1)
    assert aconsume(user.pk, amount=5, idempotency_key="s")["error"] == "insufficient_funds"
    assert general["consume"] == 1 and not IdempotencyKey.objects.exists()
    spanning = aconsume(user.pk, amount=3, idempotency_key="s")  # two batches: general path
    assert spanning["success"] and general["consume"] == 2
    assert Transaction.objects.filter(direction="DEBIT").count() == 2


@requires_postgres
def test_an_unknown_user_gets_nothing_written(make_product, general):
    make_product(KEY)
    nobody = 987_654
    for call in ({"amount": 1}, {"amount": 1, "idempotency_key": "n"}):
        assert asyncio.run(TransactionService.afast_consume_quota(nobody, KEY, **call)) is None
    assert not IdempotencyKey.objects.exists() and not Transaction.objects.exists()


def test_invalid_input_is_left_to_the_general_path(user, make_product):
    make_product(KEY)
    for call in ({"amount": 0}, {"amount": "x"}, {"metadata": "nope"}):
        assert asyncio.run(TransactionService.afast_consume_quota(user.pk, KEY, **call)) is None


@requires_postgres
def test_an_event_endpoint_sends_the_consume_to_the_general_path(user, make_product,
                                                                 general):
    product = make_product(KEY)
    make_batch(user, product, 5)
    EventEndpoint.objects.create(url="http://127.0.0.1:9/none", event_types=["*"])
    subscribed_types.clear()
    aconsume(user.pk)  # a cold cache: read once in a worker thread, then the general path
    aconsume(user.pk)
    assert general["consume"] == 2


@requires_postgres
def test_the_setting_off_takes_the_general_path(user, make_product, general, settings):
    settings.BILLABLE_ASYNC_CONSUME = False
    make_batch(user, make_product(KEY), 5)
    assert aconsume(user.pk)["success"]
    settings.BILLABLE_ASYNC_CONSUME = True
    settings.BILLABLE_GATED_FAST_PATH = False  # no pool at all
    assert aconsume(user.pk)["success"]
    assert general["consume"] == 2


def test_sqlite_or_not_the_answers_are_the_same(user, make_product):
    make_batch(user, make_product(KEY), 3)
    assert aconsume(user.pk, amount=2)["remaining"] == 1
    done = asyncio.run(TransactionService.afast_consume_quota(user.pk, KEY))
    assert (done is not None) is is_postgres()


@requires_postgres
@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
def test_threads_on_one_user_never_overspend(keyed, user, make_product):
    """The async statement, its fallback and the general path race for one wallet."""
    by_key = race_for_one_wallet(user, make_product, keyed, aconsume)
    if keyed:
        assert IdempotencyKey.objects.count() == len(by_key)


def _terminate_pool_connections() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND application_name = %s",
                       [apool.APPLICATION_NAME])
        for _ in range(100):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           [apool.APPLICATION_NAME])
            if not cursor.fetchone()[0]:
                break
            time.sleep(0.02)
    connection.close()


@requires_postgres
def test_a_terminated_connection_is_retried_and_never_double_charges(user, make_product,
                                                                     general):
    make_batch(user, make_product(KEY), 10)

    async def consumes() -> list[dict[str, Any]]:
        done = []
        for n in range(3):
            done.append(await TransactionService.aconsume_quota(user.pk, KEY,
                                                                idempotency_key=f"t{n}"))
            await asyncio.to_thread(_terminate_pool_connections)
        return done

    results = asyncio.run(consumes())
    assert all(r["success"] for r in results) and general["consume"] == 0
    assert TransactionService.get_balance(user.pk, KEY) == 7
    assert Transaction.objects.filter(direction="DEBIT").count() == 3


# -- POST /wallet/consume ---------------------------------------------------------------------


@pytest.fixture
def lean() -> Any:
    from django.core.handlers.asgi import ASGIHandler

    from billable.api.asgi import lean_api

    return lean_api(ASGIHandler(), prefix=MOUNT)


def post(app: Any, body: dict[str, Any]) -> tuple[int, Any]:
    from tests.billable.api.test_lean_asgi import call

    status, reply, _ = asyncio.run(call(app, "POST", f"{MOUNT}/wallet/consume", body,
                                        token=TOKEN))
    return status, reply


REQUESTS: list[dict[str, Any]] = [
    {"amount": 2, "action_id": "m-1", "metadata": {"k": "v"}},
    {"amount": 3, "idempotency_key": "r-1"},
    {"amount": 3, "idempotency_key": "r-1"},         # replay
    {"amount": 4, "idempotency_key": "r-1"},         # conflict
    {"amount": 6},                                    # spans two batches
    {"amount": 50},                                   # short
    {"amount": 0},                                    # invalid
    {"amount": 1, "product_key": "nope"},             # unknown product
    {"amount": 3, "idempotency_key": "r-2"},          # the last units
    {"amount": 1},                                    # exhausted
]


def _exchange(app: Any, user: Any, ref: dict[str, Any] | None = None) -> list[tuple[int, Any]]:
    """``REQUESTS`` for ``user`` (or the identity ``ref`` names); answers without usage ids."""
    out = []
    for body in REQUESTS:
        status, reply = post(app, {**(ref or {"user_id": user.pk}), "product_key": KEY, **body})
        if isinstance(reply, dict) and isinstance(reply.get("data"), dict):
            reply = {**reply, "data": {k: v for k, v in reply["data"].items()
                                       if k != "usage_id"}}
        out.append((status, json.dumps(reply, sort_keys=True)))
    return out


def test_the_endpoint_answers_the_same_on_both_paths(lean, make_user, make_product, general):
    product = make_product(KEY)
    fast_user, slow_user = make_user(), make_user()
    for user in (fast_user, slow_user):
        make_batch(user, product, 8, age_days=2)
        make_batch(user, product, 6, age_days=1)
    fast = _exchange(lean, fast_user)
    fast_calls = general["consume"]
    with override_settings(BILLABLE_ASYNC_CONSUME=False):
        slow = _exchange(lean, slow_user)
    assert fast == slow
    assert [status for status, _ in fast] == [200, 200, 200, 409, 200, 400, 422, 400, 200, 400]
    assert _keys(fast_user) == _keys(slow_user)
    order = {u: list(QuotaBatch.objects.filter(user=u).order_by("created_at")
                     .values_list("id", flat=True)) for u in (fast_user, slow_user)}
    assert _state(fast_user, order[fast_user]) == _state(slow_user, order[slow_user])
    # On PostgreSQL the three covered consumes ran as the statement; the six others (and all
    # nine on SQLite, and with the setting off) took the general path.
    assert fast_calls == (6 if is_postgres() else 9)
    assert general["consume"] == fast_calls + 9


def test_an_unknown_user_is_404_and_claims_no_key(lean, make_product):
    make_product(KEY)
    for body in ({}, {"idempotency_key": "u-1"}, {"product_key": "nope"},
                 {"product_key": "nope", "idempotency_key": "u-2"}):
        status, reply = post(lean, {"user_id": 424_242, "product_key": KEY, **body})
        assert (status, reply["message"]) == (404, "User not found"), reply
    assert not IdempotencyKey.objects.exists() and not Transaction.objects.exists()


@requires_postgres
def test_a_covered_consume_makes_no_thread_hop_of_its_own(lean, user, make_product):
    """On the lean stack only the request signals hop (``request_started`` /
    ``request_finished``); the consume runs in the event loop."""
    from tests.billable.api.test_lean_asgi import counting_hops

    make_batch(user, make_product(KEY), 10)
    body = {"user_id": user.pk, "product_key": KEY}
    assert post(lean, body)[0] == 200  # warm: statement compiled, endpoint cache filled
    with counting_hops() as hops:
        status, reply = post(lean, body)
    assert status == 200 and reply["data"]["remaining"] == 8
    assert hops["sync_to_async"] + hops["async_to_sync"] == 2, hops


def test_an_external_id_answers_the_same_on_both_paths(lean, make_user, make_product, general):
    """An ``external_id`` request reads its linked user in one statement, then consumes as a
    ``user_id`` one does: the same answers, rows and keys as the general path."""
    product = make_product(KEY)
    fast_user, slow_user = make_user(), make_user()
    for user, external_id in ((fast_user, "ext-fast"), (slow_user, "ext-slow")):
        ExternalIdentity.objects.create(provider="n8n", external_id=external_id, user=user)
        make_batch(user, product, 8, age_days=2)
        make_batch(user, product, 6, age_days=1)
    fast = _exchange(lean, fast_user, {"provider": " n8n ", "external_id": " ext-fast "})
    fast_calls = general["consume"]
    with override_settings(BILLABLE_ASYNC_CONSUME=False):
        slow = _exchange(lean, slow_user, {"provider": " n8n ", "external_id": " ext-slow "})
    assert fast == slow
    assert [status for status, _ in fast] == [200, 200, 200, 409, 200, 400, 422, 400, 200, 400]
    assert _keys(fast_user) == _keys(slow_user)
    assert fast_calls == (6 if is_postgres() else 9)
    assert ExternalIdentity.objects.count() == 2  # nothing created for a linked identity


@pytest.mark.parametrize("external_id", ["new-1", "  ", "x" * 300])
def test_an_unlinked_or_invalid_external_id_is_the_general_paths(external_id, lean,
                                                                 make_product, general):
    """Nobody linked yet: the general path creates the identity (then finds no quota); a blank
    or oversized id: its 422. Both answer as with the async consume off."""
    make_product(KEY)
    body = {"provider": "n8n", "external_id": external_id, "product_key": KEY}
    fast = post(lean, body)
    created = list(ExternalIdentity.objects.values_list("external_id", flat=True))
    ExternalIdentity.objects.all().delete()
    with override_settings(BILLABLE_ASYNC_CONSUME=False):
        slow = post(lean, body)
    assert fast == slow
    if external_id == "new-1":
        assert fast[0] == 400 and created == ["new-1"]
    else:
        assert fast[0] == 422 and created == []
    assert not Transaction.objects.exists()


@requires_postgres
def test_an_external_id_consume_makes_no_thread_hop_of_its_own(lean, user, make_product):
    from tests.billable.api.test_lean_asgi import counting_hops

    ExternalIdentity.objects.create(provider="default", external_id="tg-5", user=user)
    make_batch(user, make_product(KEY), 10)
    body = {"external_id": "tg-5", "product_key": KEY}
    assert post(lean, body)[0] == 200  # warm
    with counting_hops() as hops:
        status, reply = post(lean, body)
    assert status == 200 and reply["data"]["remaining"] == 8
    assert hops["sync_to_async"] + hops["async_to_sync"] == 2, hops
