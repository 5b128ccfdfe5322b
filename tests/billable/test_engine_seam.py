"""Issue 13: the facades the bot kit uses, the compiled SQL, the dialect check, one offer rule."""

from __future__ import annotations

import pytest
from django.core.checks import Error

from billable.checks import check_database_dialect
from billable.exceptions import (
    InsufficientFunds,
    OfferNotFound,
    QuotaExhausted,
    ReservationStateError,
)
from billable.ledger import sql
from billable.models import ExternalIdentity, QuotaBatch, Reservation
from billable.services import (
    HoldService,
    IdentityService,
    OfferService,
    PlacedHold,
    SettledHold,
    TransactionService,
)
from billable.validation import coerce_pk, resolve_offer
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db


def test_hold_service_places_commits_and_tells_a_replay_its_state(user, make_product):
    make_batch(user, make_product("CREDITS"), 5)
    placed = HoldService.place(user.id, "credits", 2, idempotency_key="tg:1:2:CREDITS")
    assert placed == PlacedHold(placed.reservation_id, True, "HELD")
    again = HoldService.place(user.id, "CREDITS", 2, idempotency_key="tg:1:2:CREDITS")
    assert (again.reservation_id, again.fresh, again.state) == (placed.reservation_id, False,
                                                                "HELD")
    settled = HoldService.commit(placed.reservation_id, read_balance=False)
    assert isinstance(settled, SettledHold)
    assert (settled.amount, settled.remaining, settled.replayed) == (2, None, False)
    assert settled.usage_id == placed.reservation_id
    replay = HoldService.commit(placed.reservation_id)
    assert (replay.replayed, replay.remaining) == (True, 3)
    third = HoldService.place(user.id, "CREDITS", 2, idempotency_key="tg:1:2:CREDITS")
    assert (third.fresh, third.state) == (False, "COMMITTED")
    assert TransactionService.check_ledger() == []


def test_hold_service_release_and_refusals(user, make_product):
    make_batch(user, make_product("CREDITS"), 3)
    with pytest.raises(InsufficientFunds):
        HoldService.place(user.id, "CREDITS", 4)
    with pytest.raises(QuotaExhausted):
        HoldService.place(user.id, "NOTHING", 1)
    placed = HoldService.place(user.id, "CREDITS", 3)
    assert HoldService.release(placed.reservation_id) is True
    with pytest.raises(ReservationStateError):
        HoldService.commit(placed.reservation_id)
    assert Reservation.objects.get(pk=placed.reservation_id).state == "RELEASED"
    assert TransactionService.get_balance(user.id, "CREDITS") == 3


async def test_hold_service_async_twins(user, make_product):
    from asgiref.sync import sync_to_async

    await sync_to_async(make_batch)(user, await sync_to_async(make_product)("CREDITS"), 3)
    placed = await HoldService.aplace(user.id, "CREDITS", 1)
    settled = await HoldService.acommit(placed.reservation_id)
    assert settled.remaining == 2
    assert await HoldService.arelease(placed.reservation_id) is False


def test_owner_of_follows_the_identity(user, make_user):
    assert IdentityService.owner_of("telegram", "42") is None
    identity = ExternalIdentity.objects.create(provider="telegram", external_id="42", user=user)
    assert IdentityService.owner_of("telegram", "42") == user.pk
    other = make_user()
    identity.user = other
    identity.save()
    assert IdentityService.owner_of("telegram", " 42 ") == other.pk
    assert IdentityService.owner_of("telegram", "") is None


def test_offer_service_uses_the_one_offer_rule(make_offer):
    live = make_offer("LIVE")
    retired = make_offer("RETIRED", is_active=False)
    assert OfferService.get_offer("live") == live
    assert OfferService.get_offer(live.pk) == live
    assert OfferService.get_offer(str(live.pk)) == live
    with pytest.raises(OfferNotFound):
        OfferService.get_offer("retired")
    assert OfferService.get_offer("retired", include_inactive=True) == retired
    assert set(OfferService.get_offers(["live", "retired", "nope"])) == {"LIVE"}
    for bad in (None, True, 1.5, "", "x" * 300, -1, 2**70):
        with pytest.raises(OfferNotFound):
            resolve_offer(bad)


@pytest.mark.parametrize("value, expected", [
    (None, None), (True, None), (1.0, None), ("", None), (" 12 ", 12), ("+12", None),
    ("١٢", None), (0, None), (2**63, None), (7, 7),
])
def test_one_primary_key_coercion(value, expected):
    assert coerce_pk(value) == expected


def test_the_compiled_statements_follow_the_spendable_rule(user, make_product):
    """The SQL path and the ORM path give the same spendable batches (one rule)."""
    from datetime import timedelta

    from django.utils import timezone

    credits = make_product("CREDITS")
    make_batch(user, credits, 5)
    make_batch(user, credits, 4, expires_in_days=-1)
    make_batch(user, credits, 3, valid_in_days=2)
    make_batch(user, credits, 2)
    QuotaBatch.objects.filter(remaining_quantity=2).update(state=QuotaBatch.State.REVOKED)
    now = timezone.now()
    orm = set(QuotaBatch.objects.spendable(now).filter(user=user).values_list("pk", flat=True))
    assert sql.spendable_summary(user_id=user.pk, key="CREDITS", now=now) == ("Credits", 5)
    assert sql.spendable_summary(user_id=user.pk, key="CREDITS",
                                 now=now + timedelta(days=3)) == ("Credits", 8)
    from django.db import transaction
    with transaction.atomic():
        lots = sql.lock_spendable_lots(user_id=user.pk, key="CREDITS", now=now)
    assert {str(lot.pk).replace("-", "") for lot in lots} == {p.hex for p in orm}
    assert {b.pk for b in QuotaBatch.objects.all() if b.is_spendable(now)} == orm


def test_the_dialect_check_refuses_an_unsupported_backend(monkeypatch):
    assert check_database_dialect() == []
    from django.db import connections

    monkeypatch.setattr(type(connections["default"]), "vendor", "oracle")
    found = check_database_dialect()
    assert [e.id for e in found] == ["billable.E006"] and isinstance(found[0], Error)


def test_an_unexpected_error_is_a_logged_500_that_leaks_nothing(caplog):
    from billable.api.errors import translate_errors
    from billable.exceptions import InvalidAmount

    @translate_errors
    def buggy():
        raise ValueError("secret internal detail")

    @translate_errors
    def refused():
        raise InvalidAmount("amount must be a positive integer")

    reply = buggy()
    assert reply.status_code == 500
    assert reply.value == {"success": False, "message": "Internal error",
                           "data": {"error": "internal_error"}}
    assert "secret internal detail" in caplog.text
    reply = refused()
    assert (reply.status_code, reply.value["data"]["error"]) == (400, "invalid_amount")
