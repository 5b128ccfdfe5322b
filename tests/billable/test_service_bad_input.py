"""Bad input at the service layer is a ``BillableError`` with a stable code — never a raw error.

Each case calls a public service with one value the database or the date arithmetic cannot take
(an overflowing hold lifetime, NUL characters, lone surrogates, NaN, deep nesting) and asserts a
``billable`` exception and that nothing was written. On PostgreSQL these values used to surface
as ``DataError``; on both backends as ``OverflowError`` / ``ValueError`` / ``RecursionError``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from billable.exceptions import BillableError
from billable.models import Transaction
from billable.services import CustomerService, OrderService, TransactionService
from billable.services.identities import IdentityService
from billable.services.referrals import ReferralService
from billable.services.trials import TrialService
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db
T = TransactionService


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_METADATA_IDS = ["nul-value", "nul-key", "surrogate", "nan", "infinity", "decimal", "int-key",
                    "huge-int", "deep"]
BAD_METADATA = [
    {"note": "a\x00b"},
    {"a\x00": 1},
    {"note": "\ud800"},
    {"ratio": float("nan")},
    {"ratio": float("inf")},
    {"amount": Decimal("1.5")},
    {1: "int key"},
    {"big": 10**2000},
    _nested(10_000),
]

BAD_TTLS = [10**30, 1e300, float("inf"), float("nan"), -1, 0, timedelta.max,
            timedelta(days=10**6), timedelta(days=400)]


@pytest.fixture
def wallet(user, make_product, make_offer):
    coins = make_product("COINS", is_currency=True)
    make_batch(user, coins, 100)
    make_offer("SWAP", items=[(make_product("UNITS"), 1)], price="1", currency="COINS")
    make_offer("FREE", items=[(make_product("TRIAL_UNITS"), 1)], price="0")
    return user


def _refused(call: Callable[[], Any]) -> str:
    before = Transaction.objects.count()
    with pytest.raises(BillableError) as caught:
        call()
    assert Transaction.objects.count() == before
    return caught.value.code


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_hold_lifetimes_that_cannot_be_represented(wallet, ttl):
    assert _refused(lambda: T.reserve_quota(wallet.id, "COINS", 1, ttl=ttl)) == "invalid_input"


@pytest.mark.parametrize("metadata", BAD_METADATA, ids=BAD_METADATA_IDS)
def test_metadata_the_database_cannot_store(wallet, metadata):
    uid = wallet.id
    calls = [
        lambda: T.consume_quota(uid, "COINS", metadata=metadata),
        lambda: T.reserve_quota(uid, "COINS", 1, metadata=metadata),
        lambda: T.exchange(uid, offer_id="SWAP", metadata=metadata),
        lambda: T.grant_offer(uid, "SWAP", metadata=metadata),
        lambda: OrderService.create_order(uid, [{"sku": "SWAP"}], metadata=metadata),
        lambda: TrialService.claim_trial(uid, "FREE", metadata=metadata),
        lambda: IdentityService.resolve_user(external_id="x1", profile=metadata),
        lambda: ReferralService.assign_referrer(uid, uid + 1000, metadata=metadata),
    ]
    for call in calls:
        _refused(call)


NUL = "k\x00"


def test_nul_characters_in_keys_ids_and_names(wallet):
    uid = wallet.id
    order = OrderService.create_order(uid, [{"sku": "SWAP"}])
    calls = [
        lambda: T.check_quota(uid, "CO\x00INS"),
        lambda: T.consume_quota(uid, "COINS", idempotency_key=NUL),
        lambda: T.consume_quota(uid, "COINS", action_id=NUL),
        lambda: T.consume_quota(uid, "COINS", action_type=NUL),
        lambda: T.reserve_quota(uid, "COINS", 1, idempotency_key=NUL),
        lambda: T.exchange(uid, offer_id="SW\x00AP"),
        lambda: T.grant_offer(uid, "SW\x00AP"),
        lambda: T.grant_offer(uid, "SWAP", source=NUL),
        lambda: T.commit_reservation(NUL),
        lambda: T.revoke_order_items(NUL),
        lambda: OrderService.create_order(uid, [{"sku": "SW\x00AP"}]),
        lambda: OrderService.pay_order(order.pk, payment_id=NUL),
        lambda: OrderService.pay_order(order.pk, payment_method=NUL),
        lambda: OrderService.cancel_pending_order(order.pk, reason=NUL),
        lambda: TrialService.claim_trial(uid, "FR\x00EE"),
        lambda: TrialService.claim_trial(uid, "FREE", identities={NUL: 1}),
        lambda: TrialService.claim_trial(uid, "FREE", plan_name=NUL),
        lambda: TrialService.is_eligible({NUL: 1}),
        lambda: IdentityService.resolve_user(external_id=NUL),
        lambda: IdentityService.resolve_user(provider=NUL, external_id="x"),
        lambda: CustomerService.merge_customers(uid, NUL),
    ]
    for index, call in enumerate(calls):
        try:
            _refused(call)
        except BaseException as exc:
            raise AssertionError(f"call #{index} escaped: {exc!r}") from exc
    order.refresh_from_db()
    assert order.status == "pending" and order.payment_id is None


@pytest.mark.parametrize("ref", ["²", "١٢", "9" * 40])
def test_odd_digit_strings_as_ids(wallet, ref):
    for call in (lambda: T.exchange(wallet.id, offer_id=ref),
                 lambda: OrderService.get_order(ref),
                 lambda: T.grant_offer(wallet.id, ref)):
        _refused(call)


@pytest.mark.parametrize("ttl, refused", [(900, False), (365 * 24 * 3600, False),
                                          (365 * 24 * 3600 + 1, True), (0, True)])
def test_the_default_hold_lifetime_is_checked_at_startup(settings, ttl, refused):
    from billable.checks import check_settings

    settings.BILLABLE_RESERVATION_TTL = ttl
    assert ("billable.E004" in {problem.id for problem in check_settings()}) is refused
