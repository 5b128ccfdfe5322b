"""Peer acceptance suite: the management commands of SPEC §7, from the contract only.

Written as another team would: only the SPEC and the user docs (docs/orders.md "Management
commands", docs/reference.md, docs/operations.md, docs/ledger.md) were read. In-process runs use
``call_command``; exit statuses are checked with a real ``python -m django`` process against a
throw-away SQLite file.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billable.models import ExternalIdentity, Offer, Product, QuotaBatch, Transaction
from billable.services import TransactionService
from tests.helpers import backend_independent, django_process

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# --- migrate_identities ----------------------------------------------------------------------


@pytest.fixture
def crm_users(make_user: Callable[..., Any]) -> list[Any]:
    return [make_user(email=f"peer{i}@example.com") for i in range(3)]


@pytest.fixture
def hourly_pack(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> Any:
    product = make_product("PEER_HOURLY")
    return make_offer("PEER_HOURLY_PACK", items=[(product, 5, "hours", 1)])


def test_billable_expire_releases_overdue_holds(user: Any, hourly_pack: Any) -> None:
    TransactionService.grant_offer(user.pk, hourly_pack)
    TransactionService.reserve_quota(user.pk, "PEER_HOURLY", amount=2, ttl=1)
    from billable.models import Reservation
    Reservation.objects.update(expires_at=timezone.now() - timedelta(seconds=5))

    out, _ = run("billable_expire")

    assert re.search(r"Released 1 expired holds?\.$", last_line(out))
    assert TransactionService.get_balance(user.pk, "PEER_HOURLY") == 5
    assert TransactionService.check_ledger() == []


# --- billable_check_ledger -------------------------------------------------------------------


@pytest.fixture
def credits_pack(make_product: Callable[..., Any], make_offer: Callable[..., Any]) -> Any:
    return make_offer("PEER_CREDITS_10", items=[(make_product("PEER_CREDITS"), 10)])


def broken_batch(user: Any) -> QuotaBatch:
    """A batch with no CREDIT row — docs/ledger.md says the check reports exactly this."""
    product = Product.objects.get(product_key="PEER_CREDITS")
    return QuotaBatch.objects.create(user=user, product=product, initial_quantity=7,
                                     remaining_quantity=7)


def test_check_ledger_fails_on_a_violation_for_all_users_and_for_that_user_only(
        make_user: Callable[..., Any], credits_pack: Any) -> None:
    clean, dirty = make_user(), make_user()
    TransactionService.grant_offer(clean.pk, credits_pack)
    batch = broken_batch(dirty)

    err = io.StringIO()
    with pytest.raises(CommandError, match="Ledger check failed"):
        call_command("billable_check_ledger", stdout=io.StringIO(), stderr=err)
    assert str(batch.pk) in err.getvalue()
    with pytest.raises(CommandError):
        run("billable_check_ledger", "--user", str(dirty.pk))
    out, _ = run("billable_check_ledger", "--user", str(clean.pk))
    assert last_line(out).startswith("Ledger consistent")


# --- billable_seed_demo and "migrations seed no data" ----------------------------------------

def test_migrations_seed_no_catalog() -> None:
    assert Product.objects.count() == 0
    assert Offer.objects.count() == 0


def test_seeded_demo_catalog_works_end_to_end(user: Any) -> None:
    run("billable_seed_demo")
    TransactionService.grant_offer(user.pk, "STARS_PACK_S")

    offer = Offer.objects.get(sku="EXCHANGE_PREDICT_10")
    result = TransactionService.exchange(user.pk, offer=offer)

    assert result["success"]
    assert TransactionService.get_balance(user.pk, "CREDITS") == 50
    assert TransactionService.get_balance(user.pk, "PREDICTIONS") == 10


# --- real processes: exit statuses -----------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("peer_ops") / "ops.sqlite3"
    done = django_process("migrate", "--noinput", database=path)
    assert done.returncode == 0, done.stderr
    yield path



@backend_independent
@pytest.mark.django_db(databases=[])
def test_process_fresh_database_has_no_catalog_and_a_sound_ledger(sqlite_file: Path) -> None:
    with sqlite3.connect(sqlite_file) as db:
        assert db.execute("SELECT COUNT(*) FROM billable_products").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM billable_offers").fetchone() == (0,)

    checked = django_process("billable_check_ledger", database=sqlite_file)
    assert checked.returncode == 0, checked.stderr
    expired = django_process("billable_expire", database=sqlite_file)
    assert expired.returncode == 0, expired.stderr
    assert expired.stdout.strip().splitlines()[-1].startswith("Expired 0 batches.")


@backend_independent
@pytest.mark.django_db(databases=[])
def test_process_check_ledger_exits_non_zero_on_a_tampered_batch(sqlite_file: Path) -> None:
    assert django_process("billable_seed_demo", database=sqlite_file).returncode == 0
    with sqlite3.connect(sqlite_file) as db:
        db.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, "
                   "last_name, email, is_staff, is_active, date_joined) VALUES "
                   "('', 0, 'tampered', '', '', '', 0, 1, '2026-01-01')")
        user_id = db.execute("SELECT id FROM auth_user WHERE username='tampered'").fetchone()[0]
        product_id = db.execute(
            "SELECT id FROM billable_products WHERE product_key='CREDITS'").fetchone()[0]
        db.execute("INSERT INTO billable_quota_batches (id, user_id, product_id, "
                   "initial_quantity, remaining_quantity, valid_from, state, created_at) "
                   "VALUES ('0190a1b2c3d4e5f60718293a4b5c6d7e', ?, ?, 9, 9, "
                   "'2026-01-01 00:00:00', 'ACTIVE', '2026-01-01 00:00:00')",
                   (user_id, product_id))

    failed = django_process("billable_check_ledger", database=sqlite_file)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    one = django_process("billable_check_ledger", "--user", str(user_id), database=sqlite_file)
    assert one.returncode != 0
    others = django_process("billable_check_ledger", "--user", str(user_id + 1000),
                            database=sqlite_file)
    assert others.returncode == 0, others.stderr


@backend_independent
@pytest.mark.django_db(databases=[])
def test_process_migrate_identities_unknown_field_writes_stderr(sqlite_file: Path) -> None:
    done = django_process("migrate_identities", "nope", "crm", database=sqlite_file)

    assert "Model auth.User has no field 'nope'." in done.stderr
    assert "Model auth.User" not in done.stdout
    assert done.returncode != 0
    with sqlite3.connect(sqlite_file) as db:
        assert db.execute("SELECT COUNT(*) FROM billable_external_identities "
                          "WHERE provider='crm'").fetchone() == (0,)


@pytest.mark.parametrize("provider", ["p" * 51, "nul\x00"])
def test_migrate_identities_refuses_a_provider_it_cannot_store(crm_users: list[Any],
                                                               provider: str) -> None:
    with pytest.raises(CommandError, match="provider"):
        run("migrate_identities", "email", provider)
    assert not ExternalIdentity.objects.exists()


def test_migrate_identities_blank_provider_is_the_default_one(crm_users: list[Any]) -> None:
    run("migrate_identities", "email", "  ")
    assert set(ExternalIdentity.objects.values_list("provider", flat=True)) == {"default"}


def test_migrate_identities_negative_limit_is_refused(crm_users: list[Any]) -> None:
    with pytest.raises(CommandError, match="limit"):
        run("migrate_identities", "email", "crm", "--limit", "-1")
    assert not ExternalIdentity.objects.exists()


def test_seed_demo_reports_a_key_already_taken_by_the_host_catalog(
        make_product: Callable[..., Any]) -> None:
    make_product("STARS_PACK_S")  # a host product whose key is a demo SKU

    with pytest.raises(CommandError, match="STARS_PACK_S"):
        run("billable_seed_demo")
    assert not Offer.objects.exists()
    assert list(Product.objects.values_list("product_key", flat=True)) == ["STARS_PACK_S"]


@pytest.mark.parametrize("command", ["billable_check_ledger", "billable_expire"])
@pytest.mark.parametrize("bad", ["abc", "-1", "0", "1.5"])
def test_jobs_refuse_a_bad_user_id_with_a_clear_error(command: str, bad: str) -> None:
    with pytest.raises(CommandError):
        run(command, "--user", bad)


@pytest.mark.django_db(transaction=True)
def test_two_expiry_processes_at_once_expire_each_batch_once(
        make_user: Callable[..., Any], hourly_pack: Any) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("concurrent job processes need PostgreSQL")
    users = [make_user() for _ in range(20)]
    for user in users:
        for _ in range(3):
            TransactionService.grant_offer(user.pk, hourly_pack)
    past = timezone.now() - timedelta(hours=2)
    QuotaBatch.objects.update(valid_from=past - timedelta(hours=1),
                              created_at=past - timedelta(hours=1), expires_at=past)
    settings = connection.settings_dict
    url = (f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/"
           f"{settings['NAME']}")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url,
           "PYTHONPATH": str(REPO)}
    if settings["PASSWORD"]:
        env["PGPASSWORD"] = settings["PASSWORD"]
    workers = [subprocess.Popen([sys.executable, "-m", "django", "billable_expire"], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=180) for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    counts = [int(re.search(r"Expired (\d+) batch", out).group(1)) for out, _ in outputs]
    assert sum(counts) == 60
    assert QuotaBatch.objects.filter(state=QuotaBatch.State.EXPIRED).count() == 60
    assert Transaction.objects.filter(action_type="expiration").count() == 60
    assert TransactionService.check_ledger() == []


@pytest.mark.parametrize("options", [["--limit", "0"], ["--limit", "-1"],
                                     ["--loop", "--interval", "0"],
                                     ["--loop", "--interval", "-5"],
                                     ["--timeout", "100", "--lease", "10"]])
def test_event_worker_refuses_options_that_would_never_deliver_or_spin(
        options: list[str]) -> None:
    with pytest.raises(CommandError):
        run("billable_deliver_events", *options)


@pytest.mark.parametrize("options", [
    ["--kind", "percent", "--percent-off", "200"],
    ["--kind", "percent", "--percent-off", "0"],
    ["--kind", "fixed", "--amount-off", "-5", "--currency", "USD"],
    ["--kind", "fixed", "--amount-off", "1e400", "--currency", "USD"],
    ["--max-uses", "-1"],
    ["--batch", "b" * 51],
])
def test_promo_codes_command_refuses_codes_the_table_cannot_hold(
        credits_pack: Any, options: list[str]) -> None:
    from billable.models import PromoCode

    with pytest.raises(CommandError):
        run("billable_promo_codes", "3", "--offer", "PEER_CREDITS_10", *options)
    assert not PromoCode.objects.exists()
