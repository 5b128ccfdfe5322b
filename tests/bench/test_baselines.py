"""The benchmark's own SQL is honest: the raw-SQL baselines do what the services do, and the
bulk data builders write ledgers the services accept (on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest

from bench.common import credit, make_product, make_users
from bench.raw import RawLedger, uuid7
from bench.scale.data import add_batches, add_telegram_users, fill_history
from billable.models import ExternalIdentity, IdempotencyKey, QuotaBatch, Transaction
from billable.services import TransactionService

pytestmark = pytest.mark.django_db
KEY = "RAW_CREDITS"


@pytest.fixture
def product():
    return make_product(KEY)


def test_raw_consume_takes_one_unit_and_writes_the_debit_the_service_writes(product) -> None:
    raw_user, service_user = make_users(2, prefix="raw")
    raw_batch, service_batch = credit(raw_user, product, 5), credit(service_user, product, 5)
    RawLedger(KEY).consume(raw_user.id)
    TransactionService.consume_quota(service_user.id, KEY)
    for batch in (raw_batch, service_batch):
        batch.refresh_from_db()
        assert (batch.remaining_quantity, batch.state) == (4, "ACTIVE")
    raw_debit = Transaction.objects.get(user=raw_user, direction="DEBIT")
    service_debit = Transaction.objects.get(user=service_user, direction="DEBIT")
    for field in ("amount", "action_type", "quota_batch_id", "metadata"):
        expected = getattr(service_debit, field) if field != "quota_batch_id" else raw_batch.pk
        assert getattr(raw_debit, field) == expected
    assert uuid.UUID(str(raw_debit.pk)).version == 7
    assert TransactionService.check_ledger(raw_user.id) == []


def test_raw_consume_spends_the_oldest_batch_first_and_exhausts_it(product) -> None:
    [user] = make_users(1, prefix="raw")
    older, newer = credit(user, product, 1), credit(user, product, 3)
    raw = RawLedger(KEY)
    raw.consume(user.id)
    raw.consume(user.id)
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.remaining_quantity, older.state) == (0, "EXHAUSTED")
    assert newer.remaining_quantity == 2
    assert TransactionService.check_ledger(user.id) == []


def test_raw_consume_refuses_when_nothing_is_spendable(product) -> None:
    [user] = make_users(1, prefix="raw")
    with pytest.raises(RuntimeError, match="nothing to spend"):
        RawLedger(KEY).consume(user.id)
    assert not Transaction.objects.filter(user=user).exists()


def test_raw_check_reads_what_check_quota_reads(product) -> None:
    [user] = make_users(1, prefix="raw")
    credit(user, product, 5)
    credit(user, product, 7)
    answer = TransactionService.check_quota(user.id, KEY)
    assert RawLedger(KEY).check(user.id) == (product.name, answer["remaining"]) == (
        product.name, 12)


def test_uuid7_is_a_time_ordered_rfc_uuid() -> None:
    first, second = uuid7(), uuid7()
    assert (first.version, first.variant) == (7, uuid.RFC_4122)
    assert first.int >> 80 <= second.int >> 80


def test_history_builder_writes_a_consistent_ledger_with_used_keys(product) -> None:
    [user] = make_users(1, prefix="rows")
    assert fill_history(user, product, 1_000, start=0) == 1_000
    assert fill_history(user, product, 500, start=1_000) == 500
    assert Transaction.objects.filter(user=user).count() == 1_500
    assert IdempotencyKey.objects.filter(user=user).count() == 15 * 99
    assert TransactionService.get_balance(user.id, KEY) == 0
    assert TransactionService.check_ledger(user.id) == []


def test_batches_builder_gives_spendable_batches_spent_oldest_first(product) -> None:
    [user] = make_users(1, prefix="batches")
    add_batches(user, product, 50, quantity=7)
    assert TransactionService.get_balance(user.id, KEY) == 350
    assert Transaction.objects.filter(user=user, direction="CREDIT").count() == 50
    TransactionService.consume_quota(user.id, KEY)
    oldest = QuotaBatch.objects.filter(user=user).order_by("created_at", "pk").first()
    assert oldest is not None and oldest.remaining_quantity == 6
    assert TransactionService.check_ledger(user.id) == []


def test_telegram_users_builder_stores_the_profile_the_bot_sends(product) -> None:
    from billable.services.identities import IdentityService
    from bot_kit.middlewares.identity import profile_of
    from bot_kit.testing import UpdateFactory

    person = UpdateFactory().user(900_005)
    names = (person.first_name, person.last_name, person.language_code)
    add_telegram_users(900_001, 20, product, quantity=3, names=names)
    identity = ExternalIdentity.objects.get(provider="telegram", external_id="900005")
    assert identity.metadata == profile_of(person)
    stamp = identity.updated_at
    resolved = IdentityService.resolve_user(provider="telegram", external_id="900005",
                                            profile=profile_of(person))
    identity.refresh_from_db()
    assert resolved.user.pk == identity.user_id and identity.updated_at == stamp
    assert TransactionService.get_balance(identity.user_id, KEY) == 3
    assert ExternalIdentity.objects.filter(provider="telegram").count() == 20
    assert TransactionService.check_ledger(identity.user_id) == []
