"""Migration 0003 leaves 0.3 databases alone and refuses schemas it cannot upgrade.

These tests need no 0.2 package: they run this repository's ``migrate`` in a separate process
on scratch databases of the current backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from billable.upgrades.detect import Schema, detect
from tests.billable.upgrades.support import checked, migrate, run, scratch_database

UPGRADED = "Upgraded the billable 0.2 schema in place"

ACTIVITY = """
from django.contrib.auth import get_user_model
from billable.services import OrderService, TransactionService
user = get_user_model().objects.create(username="existing")
order = OrderService.create_order(user.pk, [{"sku": "STARS_PACK_S"}])
OrderService.process_payment(order.pk, payment_id="charge-1", payment_method="telegram_stars")
TransactionService.consume_quota(user.pk, "CREDITS", amount=7, idempotency_key="k-1")
TransactionService.reserve_quota(user.pk, "CREDITS", amount=3)
"""


def shell(url: str, code: str) -> str:
    return checked(run(["-m", "django", "shell", "-c", code], url=url)).stdout


@pytest.mark.django_db
def test_a_fresh_install_is_recognised_as_current_and_records_the_step() -> None:
    assert detect(connection) is Schema.CURRENT
    applied = MigrationRecorder(connection).applied_migrations()
    assert ("billable", "0003_upgrade_from_0_2") in applied


def test_an_existing_0_3_database_migrates_without_any_change(tmp_path: Path) -> None:
    with scratch_database(tmp_path, "existing_03") as url:
        checked(migrate(url))
        checked(run(["-m", "django", "billable_seed_demo"], url=url))
        shell(url, ACTIVITY)
        # Later migrations add tables and columns (0004 API keys, 0005 order-line snapshots)
        # that a database built before 0003 lacks: leave them out of the comparison.
        dump = ["-m", "django", "dumpdata", "billable", "--exclude", "billable.apikey",
                "--exclude", "billable.orderitem", "--indent", "1"]
        before = checked(run(dump, url=url)).stdout
        # Step back to the state of a database built before 0003, then forward again.
        checked(migrate(url, "billable", "0002_customer_merges"))
        migrated = checked(migrate(url)).stdout
        after = checked(run(dump, url=url)).stdout

    assert "Applying billable.0003_upgrade_from_0_2... OK" in migrated
    assert UPGRADED not in migrated
    models = {row["model"] for row in json.loads(before)}
    assert {"billable.transaction", "billable.idempotencykey", "billable.reservation"} <= models
    assert _without_translations(after) == _without_translations(before)


def _without_translations(dump: str) -> list[dict]:
    """0008 adds ``translations`` to products and offers: stepping back before it drops them."""
    rows = json.loads(dump)
    for row in rows:
        row["fields"].pop("translations", None)
    return rows


def _break_and_migrate(tmp_path: Path, name: str, sql: list[str]) -> str:
    """Build a 0.3 database, turn it into something else with ``sql``, run ``migrate``."""
    with scratch_database(tmp_path, name) as url:
        checked(migrate(url, "billable", "0003_upgrade_from_0_2"))  # before later migrations
        statements = [*sql, "DELETE FROM django_migrations WHERE app = 'billable' "
                            "AND name = '0003_upgrade_from_0_2'"]
        shell(url, "from django.db import connection\n"
                   "with connection.cursor() as cursor:\n"
                   + "".join(f"    cursor.execute({s!r})\n" for s in statements))
        refused = migrate(url)
    assert refused.returncode == 1, refused.stdout
    assert "Traceback" not in refused.stderr
    return refused.stderr


def test_a_0_1_database_is_refused_with_the_path_through_0_2(tmp_path: Path) -> None:
    stderr = _break_and_migrate(tmp_path, "older_01", [
        "DROP TABLE billable_idempotency_keys",
        "CREATE TABLE billable_user_products (id integer PRIMARY KEY)",
    ])

    assert "LegacyUpgradeError: billable: this database holds tables of billable 0.1" in stderr
    assert "install billable==0.2.0" in stderr
    assert 'section "Databases older than 0.2"' in stderr


def test_billable_tables_of_no_known_shape_are_refused(tmp_path: Path) -> None:
    stderr = _break_and_migrate(tmp_path, "unknown", ["DROP TABLE billable_idempotency_keys"])

    assert "tables are neither 0.3's nor 0.2's" in stderr
    assert "billable_trial_history has no created_at column" in stderr
