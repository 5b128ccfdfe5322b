"""The identity table's triggers (migration 0012) send a change notice for every write that can
make a cached ``(provider, external_id) → account`` stale, whoever the writer is — and for
nothing else. Read on a real ``LISTEN`` connection (PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from billable.ledger import sql
from billable.models import ExternalIdentity
from billable.services.identities import IdentityService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

TABLE = ExternalIdentity._meta.db_table
CONTROL = "control"


class Notices:
    """A connection of its own, LISTENing to identity change notices."""

    def __init__(self) -> None:
        params = connection.settings_dict
        self.conn = psycopg.connect(
            dbname=params["NAME"], user=params["USER"], password=params["PASSWORD"] or None,
            host=params["HOST"] or None, port=params["PORT"] or None, autocommit=True)
        self.conn.execute(sql.LISTEN_IDENTITY)

    def until_control(self, control: Control) -> list[str]:
        """Commit ``control`` (a change that must send a notice), then every payload received
        up to and including its notice: notices arrive in commit order, so whatever an earlier
        transaction sent is in the list."""
        control.move()
        payloads = []
        for notice in self.conn.notifies(timeout=10):
            payloads.append(notice.payload)
            if notice.payload == control.payload:
                return payloads
        raise AssertionError(f"the control notice never arrived (received {payloads})")


@pytest.fixture
def notices() -> Iterator[Notices]:
    listening = Notices()
    yield listening
    listening.conn.close()


class Control:
    """A change that must send a notice: the identity ``(control, control)`` moved from one
    new account to another (:attr:`payload` is its notice)."""

    def __init__(self, make_user: Callable[..., Any]) -> None:
        first, self.second = make_user(), make_user()
        self.row = ExternalIdentity.objects.create(provider=CONTROL, external_id=CONTROL,
                                                   user=first)
        self.payload = payload([first.pk, self.second.pk], (CONTROL, CONTROL))

    def move(self) -> None:
        ExternalIdentity.objects.filter(pk=self.row.pk).update(user=self.second)


def payload(users: list[Any], *pairs: tuple[str, str]) -> str:
    return json.dumps({"users": [str(u) for u in users], "identities": [list(p) for p in pairs]},
                      separators=(",", ":"), ensure_ascii=False)


def elsewhere(work: Callable[[], Any]) -> Any:
    """Run ``work`` on another thread, on its own connection (committed when it returns)."""
    [result] = run_in_threads(1, lambda _: work())
    if isinstance(result, BaseException):
        raise result
    return result


def test_moves_by_any_writer_name_both_accounts_and_the_identity(notices, make_user):
    first, second, third = make_user(), make_user(), make_user()
    row = ExternalIdentity.objects.create(provider="telegram", external_id="7", user=first)

    def raw_move() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'UPDATE "{TABLE}" SET "user_id" = %s WHERE "id" = %s',
                           [third.pk, row.pk])

    elsewhere(lambda: ExternalIdentity.objects.filter(pk=row.pk).update(user=second))
    elsewhere(raw_move)
    received = notices.until_control(Control(make_user))

    assert received[:2] == [payload([first.pk, second.pk], ("telegram", "7")),
                            payload([second.pk, third.pk], ("telegram", "7"))]
    assert len(received) == 3


def test_profile_writes_and_first_links_send_nothing(notices, make_user):
    owner = make_user()
    row = ExternalIdentity.objects.create(provider="telegram", external_id="8", user=owner)

    def raw_profile() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'UPDATE "{TABLE}" SET "metadata" = %s WHERE "id" = %s',
                           ['{"username": "raw"}', row.pk])

    elsewhere(lambda: ExternalIdentity.objects.filter(pk=row.pk).update(metadata={"a": 1}))
    elsewhere(raw_profile)
    row.metadata = {"username": "bulk"}
    ExternalIdentity.objects.bulk_update([row], ["metadata"])
    row.save()  # a full save that changes nothing the cache keys on
    row.save(update_fields=["metadata", "updated_at"])
    IdentityService.resolve_user(provider="telegram", external_id="9")  # a first contact
    unlinked = ExternalIdentity.objects.create(provider="telegram", external_id="10")
    ExternalIdentity.objects.filter(pk=unlinked.pk).update(user=owner)  # linked from nobody

    control = Control(make_user)
    assert notices.until_control(control) == [control.payload]


def test_rolled_back_move_sends_nothing(notices, make_user):
    first, second = make_user(), make_user()
    row = ExternalIdentity.objects.create(provider="telegram", external_id="11", user=first)

    def move_then_fail() -> None:
        with transaction.atomic():
            ExternalIdentity.objects.filter(pk=row.pk).update(user=second)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        elsewhere(move_then_fail)

    control = Control(make_user)
    assert notices.until_control(control) == [control.payload]


def test_one_statement_over_many_rows_sends_one_notice_per_row(notices, make_user):
    source, target = make_user(), make_user()
    for value in ("21", "22", "23"):
        ExternalIdentity.objects.create(provider="telegram", external_id=value, user=source)

    assert ExternalIdentity.objects.filter(user=source).update(user=target) == 3
    received = notices.until_control(Control(make_user))

    assert sorted(received[:-1]) == [payload([source.pk, target.pk], ("telegram", v))
                                     for v in ("21", "22", "23")]


def test_rename_and_delete_name_the_pairs_they_touch(notices, make_user):
    owner = make_user()
    odd = 'a "quoted" \\ ünï'
    row = ExternalIdentity.objects.create(provider="telegram", external_id=odd, user=owner)

    ExternalIdentity.objects.filter(pk=row.pk).update(external_id="31")
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{TABLE}" WHERE "id" = %s', [row.pk])
    received = notices.until_control(Control(make_user))

    assert received[:2] == [payload([owner.pk], ("telegram", odd), ("telegram", "31")),
                            payload([owner.pk], ("telegram", "31"))]
    assert sql.decode_identity_notice(payload=received[0]).identities == (
        ("telegram", odd), ("telegram", "31"))


def test_deleting_the_account_names_its_identities(notices, make_user):
    owner = make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="41", user=owner)
    pk = owner.pk

    owner.delete()  # the identities go with it (Django's cascade: a DELETE of the rows)

    assert notices.until_control(Control(make_user))[0] == payload(
        [pk], ("telegram", "41"))


def test_truncate_says_everything(notices, make_user):
    ExternalIdentity.objects.create(provider="telegram", external_id="51", user=make_user())
    with connection.cursor() as cursor:
        cursor.execute(f'TRUNCATE "{TABLE}"')

    received = [n.payload for n in notices.conn.notifies(timeout=10, stop_after=1)]
    assert received == ['{"all":true}']


def triggers() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) "
                       "AND NOT tgisinternal ORDER BY tgname", [TABLE])
        return [name for (name,) in cursor.fetchall()]


def triggers_on() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(sql.IDENTITY_TRIGGERS_ON)
        return bool(cursor.fetchone()[0])


def test_migration_reverses_and_applies_again():
    assert triggers() == sorted(sql.IDENTITY_TRIGGERS) and triggers_on()
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("billable", "0011_wallet_index_in_spend_order")])
        assert triggers() == [] and not triggers_on()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = %s",
                           ["billable_identity_notice"])
            assert cursor.fetchone()[0] == 0
    finally:
        call_command("migrate", "billable", verbosity=0)
    assert triggers() == sorted(sql.IDENTITY_TRIGGERS) and triggers_on()


def test_a_disabled_trigger_is_not_on():
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{TABLE}" DISABLE TRIGGER "{sql.IDENTITY_TRIGGERS[0]}"')
    try:
        assert not triggers_on()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{TABLE}" ENABLE TRIGGER "{sql.IDENTITY_TRIGGERS[0]}"')
    assert triggers_on()
