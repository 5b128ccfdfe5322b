"""Bulk promo codes: every argument of ``generate_codes`` is checked before anything is written
(one check for the Python API, the command and the admin page), and ``max_uses >= 1`` holds
everywhere a code is created — down to the database (migration 0015)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billable.exceptions import InvalidInput, OfferNotFound
from billable.growth.codes import generate_codes
from billable.models import Offer, PromoCode

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("arguments", "field"), [
    ({"count": 0}, "count"),
    ({"count": True}, "count"),
    ({"count": "5"}, "count"),
    ({"count": 100_001}, "count"),
    ({"length": 5}, "length"),
    ({"length": 33}, "length"),
    ({"length": 8.0}, "length"),
    ({"prefix": 5}, "prefix"),
    ({"prefix": "X\x00"}, "prefix"),
    ({"prefix": "P" * 40, "length": 30}, "prefix"),
    ({"batch": "b" * 51}, "batch"),
    ({"batch": None}, "batch"),
    ({"batch": "\ud800"}, "batch"),
    ({"kind": "bogus"}, "kind"),
    ({"kind": 3}, "kind"),
    ({"offer": None}, "offer"),
    ({"kind": "percent"}, "percent_off"),
    ({"kind": "percent", "percent_off": 0}, "percent_off"),
    ({"kind": "percent", "percent_off": 200}, "percent_off"),
    ({"kind": "percent", "percent_off": 12.5}, "percent_off"),
    ({"kind": "percent", "percent_off": True}, "percent_off"),
    ({"percent_off": 10}, "percent_off"),
    ({"kind": "fixed"}, "amount_off"),
    ({"kind": "fixed", "amount_off": Decimal("-5")}, "amount_off"),
    ({"kind": "fixed", "amount_off": 0}, "amount_off"),
    ({"kind": "fixed", "amount_off": Decimal("NaN")}, "amount_off"),
    ({"kind": "fixed", "amount_off": Decimal("1e400")}, "amount_off"),
    ({"kind": "fixed", "amount_off": Decimal("0.001")}, "amount_off"),
    ({"kind": "fixed", "amount_off": 1.5}, "amount_off"),
    ({"kind": "fixed", "amount_off": "abc"}, "amount_off"),
    ({"amount_off": Decimal("5")}, "amount_off"),
    ({"currency": "C" * 51}, "currency"),
    ({"currency": 840}, "currency"),
    ({"max_uses": 0}, "max_uses"),
    ({"max_uses": -1}, "max_uses"),
    ({"max_uses": True}, "max_uses"),
    ({"max_uses": "1"}, "max_uses"),
    ({"max_uses": 2**31}, "max_uses"),
    ({"valid_from": "2026-01-01"}, "valid_from"),
    ({"valid_from": NOW, "valid_until": NOW}, "valid_until"),
    ({"valid_from": NOW, "valid_until": NOW - timedelta(days=1)}, "valid_until"),
    ({"is_active": "yes"}, "is_active"),
    ({"first_time_only": 1}, "first_time_only"),
    ({"metadata": {"x": float("nan")}}, "metadata"),
    ({"metadata": [1]}, "metadata"),
    ({"uses_count": 5}, "uses_count"),
    ({"offer_id": 1}, "offer_id"),
])
def test_generate_codes_refuses_bad_arguments_and_writes_nothing(
        shop: dict[str, Any], arguments: dict[str, Any], field: str) -> None:
    """Before: these reached the database (IntegrityError, DataError, a naive-datetime warning)
    or were stored silently (``True`` as one use, ``12.5`` as 12 percent)."""
    call = {"count": 5, "offer": shop["pack"], **arguments}
    count = call.pop("count")
    with pytest.raises(InvalidInput) as caught:
        generate_codes(count, **call)
    assert caught.value.code == "invalid_input"
    assert caught.value.details["field"] == field, caught.value.message
    assert not PromoCode.objects.exists()


@pytest.mark.parametrize("offer", ["NOPE", 0, 10**30, 2.5, Offer(sku="UNSAVED")])
def test_generate_codes_refuses_an_unknown_offer(offer: Any) -> None:
    with pytest.raises(OfferNotFound) as caught:
        generate_codes(3, offer=offer)
    assert caught.value.code == "offer_not_found"
    assert not PromoCode.objects.exists()


def test_generate_codes_normalizes_what_it_accepts(shop: dict[str, Any]) -> None:
    codes = generate_codes(3, prefix="  ny-", length=6, batch="ny", kind="FIXED",
                           offer="usd_pack", amount_off="1.50", currency=" usd ", max_uses=2,
                           valid_from=datetime(2026, 12, 31, 20, 0))
    stored = PromoCode.objects.filter(batch="ny").order_by("id")
    assert {c.code for c in codes} == {c.code for c in stored} and len(codes) == 3
    for promo in [*codes, *stored]:
        assert promo.code.startswith("NY-") and len(promo.code) == 9
        assert (promo.kind, promo.offer_id, promo.amount_off, promo.currency) == (
            "fixed", shop["usd"].pk, Decimal("1.50"), "USD")
        assert promo.valid_from == timezone.make_aware(datetime(2026, 12, 31, 20, 0))


def test_a_retired_offer_can_still_be_given_away(shop: dict[str, Any]) -> None:
    Offer.objects.filter(pk=shop["free"].pk).update(is_active=False)
    [code] = generate_codes(1, offer=shop["free"].pk)
    assert code.offer_id == shop["free"].pk


def test_a_database_error_mid_batch_leaves_no_code(shop: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The codes are written in one transaction: all of them or none."""
    calls = []
    real = PromoCode.objects.bulk_create

    def flaky(rows: list[PromoCode], **kwargs: Any) -> list[PromoCode]:
        calls.append(len(rows))
        if len(calls) == 2:
            raise IntegrityError("simulated")
        return real(rows[:-1], **kwargs)  # one code short: a second round is needed

    monkeypatch.setattr(PromoCode.objects, "bulk_create", flaky)
    with pytest.raises(IntegrityError):
        generate_codes(4, offer=shop["free"])
    assert calls == [4, 1] and not PromoCode.objects.exists()


@pytest.mark.parametrize("options", [
    ["--max-uses", "0"],
    ["--kind", "percent"],
    ["--kind", "grant", "--percent-off", "10"],
    ["--kind", "fixed", "--amount-off", "NaN", "--currency", "USD"],
    ["--kind", "fixed", "--amount-off", "abc"],
    ["--valid-from", "2026-02-01", "--valid-until", "2026-01-01"],
    ["--length", "40"],
    ["--prefix", "P" * 60],
])
def test_the_command_refuses_what_the_python_api_refuses(shop: dict[str, Any],
                                                         options: list[str]) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("billable_promo_codes", "3", "--offer", "PACK_10", *options,
                     stdout=StringIO(), stderr=StringIO())
    assert "Traceback" not in str(caught.value)
    assert not PromoCode.objects.exists()


def test_the_command_names_an_unknown_offer() -> None:
    with pytest.raises(CommandError, match="'NOPE' not found"):
        call_command("billable_promo_codes", "3", "--offer", "NOPE", stdout=StringIO())


def test_the_command_infers_the_kind_and_makes_local_times_aware(shop: dict[str, Any]) -> None:
    call_command("billable_promo_codes", "2", "--offer", "pack_10", "--percent-off", "15",
                 "--valid-until", "2027-01-01T00:00", "--batch", "p", stdout=StringIO(),
                 stderr=StringIO())
    assert [(c.kind, c.percent_off, timezone.is_aware(c.valid_until))
            for c in PromoCode.objects.filter(batch="p")] == [("percent", 15, True)] * 2


def test_max_uses_below_one_is_refused_by_the_model_and_the_database(
        shop: dict[str, Any]) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        PromoCode(code="ZERO", offer=shop["free"], max_uses=0).full_clean()
    assert "max_uses must be at least 1" in str(caught.value.message_dict["max_uses"])
    with pytest.raises(IntegrityError), transaction.atomic():
        PromoCode.objects.create(code="ZERO", offer=shop["free"], max_uses=0)
    PromoCode.objects.create(code="ONE", offer=shop["free"], max_uses=1)
    PromoCode.objects.create(code="ANY", offer=shop["free"], max_uses=None)
    assert PromoCode.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_migration_0015_turns_a_zero_use_code_into_an_inactive_one(
        make_product: Any, make_offer: Any) -> None:
    """A ``max_uses = 0`` row saved before 0015 does not stop the migration: it becomes
    ``max_uses = 1``, inactive (still unusable), marked in its metadata."""
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("billable", "0014_offer_currency_default")])
        offer = make_offer("OLD", items=[(make_product("OLDCREDITS"), 1)], price="0")
        with connection.cursor() as cursor:
            for code, max_uses in (("NEVER", 0), ("TWICE", 2)):
                cursor.execute(
                    "INSERT INTO billable_promo_codes (code, kind, offer_id, currency, max_uses,"
                    " uses_count, once_per_customer, first_time_only, is_active, batch,"
                    " metadata, created_at) VALUES (%s, 'grant', %s, '', %s, 0, %s, %s, %s,"
                    " '', %s, %s)", [code, offer.pk, max_uses, True, False, True,
                                     '{"note": "old"}', timezone.now()])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    never, twice = PromoCode.objects.get(code="NEVER"), PromoCode.objects.get(code="TWICE")
    assert (never.max_uses, never.is_active, never.metadata) == (
        1, False, {"note": "old", "max_uses_before_0015": 0})
    assert (twice.max_uses, twice.is_active, twice.metadata) == (2, True, {"note": "old"})
