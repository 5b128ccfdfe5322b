"""A database built by the published billable 0.2 upgrades in place with ``migrate``.

Each test builds a real 0.2 database — schema from 0.2's own migrations, rows from 0.2's own
services (``legacy_build.py``, run on the package installed from the index) — on the backend of
the current run (SQLite, or PostgreSQL when ``DATABASE_URL`` points at it), then runs this
repository's ``manage.py migrate`` on it in a separate process, as a user would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.billable.upgrades.rows import schema_of
from tests.billable.upgrades.support import (
    ROOT,
    build_legacy,
    checked,
    migrate,
    read_upgraded,
    run,
    scratch_database,
)

UPGRADED = "Upgraded the billable 0.2 schema in place"


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A full 0.2 database, its 0.2 snapshot, the migrate output and 0.3's reads and writes.

    ``bot_kit`` is migrated first, as a host whose own apps depend on it would: its tables then
    hold foreign keys to ``billable_orders`` before the upgrade reshapes that table.
    """
    workdir = tmp_path_factory.mktemp("upgrade")
    with scratch_database(workdir, "legacy_full") as url:
        snapshot = build_legacy(url, workdir, "full")
        checked(migrate(url, "bot_kit"))
        migrated = checked(migrate(url))
        yield {"snapshot": snapshot, "migrate": migrated.stdout,
               **read_upgraded(url, snapshot, workdir, "full")}


def test_the_snapshot_comes_from_the_published_0_2_package(upgraded: dict[str, Any]) -> None:
    snapshot = upgraded["snapshot"]
    assert snapshot["version"] == "0.2.0"
    assert {len(rows) > 0 for rows in snapshot["rows"].values()} == {True}


def test_migrate_reports_the_upgrade(upgraded: dict[str, Any]) -> None:
    assert "Applying billable.0003_upgrade_from_0_2..." in upgraded["migrate"]
    assert UPGRADED in upgraded["migrate"]


@pytest.mark.parametrize("table", ["Product", "Offer", "OfferItem", "Order", "OrderItem",
                                   "QuotaBatch", "Transaction", "TrialHistory",
                                   "ExternalIdentity", "Referral"])
def test_every_row_is_kept_unchanged(upgraded: dict[str, Any], table: str) -> None:
    assert upgraded["reads"]["rows"][table] == upgraded["snapshot"]["rows"][table]


def test_balances_orders_and_wallets_read_the_same(upgraded: dict[str, Any]) -> None:
    before, after = upgraded["snapshot"], upgraded["reads"]

    assert after["balances"] == before["balances"]
    assert after["orders"] == before["orders"]
    for name, wallet in after["rest_wallets"].items():
        spendable = {key: n for key, n in before["balances"][name].items() if n}
        assert wallet == {"user_id": before["users"][name], "balances": spendable}


@pytest.mark.django_db
def test_the_upgraded_schema_equals_a_fresh_install(upgraded: dict[str, Any]) -> None:
    fresh = schema_of(connection)  # the test database: built by this release's migrations

    assert sorted(upgraded["schema"]) == sorted(fresh)
    for table, shape in fresh.items():
        assert upgraded["schema"][table] == shape, table


def test_new_grants_consumptions_orders_and_holds_work(upgraded: dict[str, Any]) -> None:
    writes, before = upgraded["writes"], upgraded["snapshot"]["balances"]

    assert writes["granted"] == [10]
    assert writes["consumed"]["success"] is True
    assert writes["order_status"] == "paid"
    assert writes["exchanged"]["success"] is True
    assert writes["balances_after"] == {
        "alice": {"CREDITS": before["alice"]["CREDITS"] + 10 - 4, "COINS": 0},
        "bob": {"CREDITS": before["bob"]["CREDITS"] + 10, "COINS": 0},
        "carol": {"CREDITS": before["carol"]["CREDITS"] + 5,
                  "COINS": before["carol"]["COINS"] - 20},
        "dave": {"CREDITS": 0, "COINS": before["dave"]["COINS"] - 2},
    }
    assert writes["ledger_problems"] == []


def test_a_retry_of_a_0_2_idempotent_consumption_is_not_charged_again(
        upgraded: dict[str, Any]) -> None:
    replayed, original = upgraded["writes"]["replayed"], upgraded["snapshot"]["idempotent"]

    assert replayed["success"] is True and "idempotent" in replayed["message"]
    assert replayed["usage_id"] == original["usage_id"]
    assert replayed["remaining"] == upgraded["snapshot"]["balances"]["alice"]["CREDITS"]


def _fix_section(path: Path) -> str:
    """The Python blocks of docs/upgrading.md's "When migrate stops" section, in order."""
    text = path.read_text(encoding="utf-8")
    section = text.split("### When migrate stops", 1)[1].split("\n### ", 1)[0]
    return "\n".join(re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL))


def test_blocked_upgrade_names_the_rows_changes_nothing_and_the_documented_fix_unblocks_it(
        tmp_path: Path) -> None:
    with scratch_database(tmp_path, "legacy_blocked") as url:
        snapshot = build_legacy(url, tmp_path, "blocked")
        refused = migrate(url)

        assert refused.returncode == 1
        assert "LegacyUpgradeError" in refused.stderr and "Traceback" not in refused.stderr
        assert "share one payment id (and method) with another order (id 7, 8)" in refused.stderr
        assert "billable_order_items have a quantity of 0 or less (id 10)" in refused.stderr
        assert "billable_referrals give one referee several referrers (id 1, 2)" in (
            refused.stderr)
        assert 'docs/upgrading.md, section "When migrate stops"' in refused.stderr
        assert read_upgraded(url, snapshot, tmp_path, "rows")["rows"] == snapshot["rows"]

        checked(run(["-m", "django", "shell", "-c", _fix_section(ROOT / "docs" / "upgrading.md")],
                    url=url))
        assert UPGRADED in checked(migrate(url)).stdout
        rows = read_upgraded(url, snapshot, tmp_path, "rows")["rows"]

    orders = {order["id"]: order for order in rows["Order"]}
    assert orders[7]["payment_id"] == "tg_charge_77"
    assert orders[8]["payment_id"] is None
    assert orders[8]["metadata"] == {"payment_id_before_upgrade": "tg_charge_77"}
    assert orders[9]["status"] == "cancelled"
    assert orders[9]["metadata"]["lines_removed_before_upgrade"][0]["quantity"] == 0
    assert [r["referrer_id"] for r in rows["Referral"]] == [snapshot["users"]["alice"]]
    assert rows["Referral"][0]["metadata"]["other_referrers_before_upgrade"][0][
        "referrer_id"] == snapshot["users"]["bob"]
    for table in ("Product", "Offer", "QuotaBatch", "Transaction", "ExternalIdentity"):
        assert rows[table] == snapshot["rows"][table], table
