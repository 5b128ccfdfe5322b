"""``check_quota`` reads the catalog as it is at the moment of the call, and the lazy settings
follow every override.

The check's statement finds the product through its key on every call (no key → id cache: a
cached id measured no faster, see docs/performance.md), so a product re-keyed, renamed or
deleted by another process — here a raw ``UPDATE`` / ``DELETE`` on a second connection, which
sends no signal — can never give a stale answer.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from billable.conf import billable_settings
from billable.models import Product
from billable.services import TransactionService
from tests.billable.ledger_support import make_batch

pytestmark = pytest.mark.django_db

CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


def _raw(statement: str, params: list[object]) -> None:
    """Change the catalog behind the ORM's back (no model signal fires)."""
    with connection.cursor() as cursor:
        cursor.execute(statement.format(table=connection.ops.quote_name(Product._meta.db_table)),
                       params)


def _check(user, key):
    return TransactionService.check_quota(user.id, key)


def test_check_follows_a_product_rekeyed_without_signals(user, make_product):
    credits = make_product("CREDITS")
    make_batch(user, credits, 5)
    assert _check(user, "credits")["remaining"] == 5
    _raw("UPDATE {table} SET product_key = %s WHERE id = %s", ["TOKENS", credits.pk])
    assert _check(user, "CREDITS") == {"can_use": False, "product_key": "CREDITS", "remaining": 0,
                                       "message": "No active quota for CREDITS"}
    assert _check(user, "TOKENS")["remaining"] == 5


def test_check_follows_a_new_product_taking_an_old_key(user, make_product):
    old = make_product("CREDITS")
    make_batch(user, old, 5)
    assert _check(user, "CREDITS")["remaining"] == 5
    _raw("UPDATE {table} SET product_key = %s WHERE id = %s", ["RETIRED", old.pk])
    new = make_product("CREDITS")
    assert _check(user, "CREDITS")["can_use"] is False
    make_batch(user, new, 2)
    assert _check(user, "CREDITS")["remaining"] == 2
    assert _check(user, "RETIRED")["remaining"] == 5


def test_check_of_a_deleted_product_is_no_quota(user, make_product):
    gone = make_product("GONE")
    assert _check(user, "GONE")["can_use"] is False
    _raw("DELETE FROM {table} WHERE id = %s", [gone.pk])
    assert _check(user, "GONE") == {"can_use": False, "product_key": "GONE", "remaining": 0,
                                    "message": "No active quota for GONE"}


def test_check_reports_the_current_product_name(user, make_product):
    credits = make_product("CREDITS")
    make_batch(user, credits, 3)
    _raw("UPDATE {table} SET name = %s WHERE id = %s", ["Renamed credits", credits.pk])
    answer = _check(user, "CREDITS")
    assert answer["product_name"] == "Renamed credits"
    assert answer["message"] == "Available: Renamed credits (3 left)"


def test_check_of_an_inactive_product_still_counts_its_batches(user, make_product):
    """Retiring a product stops its sale, not the use of what was bought (as before)."""
    credits = make_product("CREDITS")
    make_batch(user, credits, 4)
    Product.objects.filter(pk=credits.pk).update(is_active=False)
    assert _check(user, "CREDITS")["remaining"] == 4


def test_check_counts_only_the_asked_product_in_one_statement(user, make_product):
    credits, other = make_product("CREDITS"), make_product("OTHER")
    make_batch(user, credits, 2)
    make_batch(user, other, 7)
    make_batch(user, credits, 3, expires_in_days=-1)
    with CaptureQueriesContext(connection) as ctx:
        answer = _check(user, " credits ")
    assert answer["remaining"] == 2
    assert len([q for q in ctx.captured_queries
                if not q["sql"].lstrip().upper().startswith(CONTROL)]) == 1
    assert _check(user, "OTHER")["remaining"] == 7
    assert TransactionService.get_balance(str(user.id), "credits") == 2


def test_lazy_settings_follow_overrides_and_their_end(settings):
    assert billable_settings.CONSUMPTION_ORDER == "fifo"
    with override_settings(BILLABLE_CONSUMPTION_ORDER="expiring_first"):
        assert billable_settings.CONSUMPTION_ORDER == "expiring_first"
        assert billable_settings.BILLABLE_CONSUMPTION_ORDER == "expiring_first"
    assert billable_settings.CONSUMPTION_ORDER == "fifo"
    settings.BILLABLE_RESERVATION_TTL = 60
    assert billable_settings.RESERVATION_TTL == 60
    del settings.BILLABLE_RESERVATION_TTL
    assert billable_settings.RESERVATION_TTL == 900
    with pytest.raises(AttributeError):
        billable_settings.NOT_A_SETTING  # noqa: B018
