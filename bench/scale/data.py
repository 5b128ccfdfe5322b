"""Bulk data for the scaling curves, written with set-based SQL (never one ORM row at a time).

Every builder is one ``INSERT … SELECT`` per table over a number series (PostgreSQL
``generate_series``, SQLite a recursive CTE), so a million ledger rows take seconds, not hours.
Rows follow the ledger's rules: every batch has its CREDIT row, every DEBIT its batch, and
``initial − Σ DEBIT = remaining`` holds for every batch written here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

ROWS_PER_BATCH = 100  # history: 1 CREDIT + 99 DEBIT rows per exhausted batch
TG_PREFIX = "tg"
LEDGER_COLUMNS = ("INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, "
                  "direction, action_type, metadata, created_at) ")
BATCH_COLUMNS = ("INSERT INTO billable_quota_batches (id, user_id, product_id, initial_quantity, "
                 "remaining_quantity, valid_from, state, created_at) ")


def series(vendor: str) -> str:
    """A subquery yielding ``n`` = 1..%s on either backend."""
    if vendor == "postgresql":
        return "(SELECT g AS n FROM generate_series(1, %s) AS g)"
    return ("(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
            "SELECT n FROM s)")


def new_id(vendor: str) -> str:
    return "gen_random_uuid()" if vendor == "postgresql" else "lower(hex(randomblob(16)))"


def _stamp(days: float, seconds: int = 0) -> Any:
    from django.db import connection
    from django.utils import timezone

    moment = timezone.now() - timedelta(days=days, seconds=seconds)
    return connection.ops.adapt_datetimefield_value(moment)


def _credits_for(cursor: Any, vendor: str, where: str, params: list[Any]) -> None:
    """One CREDIT row for its initial quantity per batch matched by ``where`` (alias ``b``)
    that has no ledger row yet."""
    cursor.execute(LEDGER_COLUMNS + f"SELECT {new_id(vendor)}, b.user_id, b.id, "
                   "b.initial_quantity, 'CREDIT', 'purchase', '{}', b.created_at "
                   f"FROM billable_quota_batches b WHERE {where} AND NOT EXISTS (SELECT 1 FROM "
                   "billable_transactions x WHERE x.quota_batch_id = b.id)", params)


def fill_history(user: Any, product: Any, rows: int, *, start: int) -> int:
    """Append about ``rows`` ledger rows of exhausted history for ``user`` and as many used
    idempotency keys (as if every past consume had been keyed); return the rows written."""
    from django.db import connection, transaction

    batches = max(rows // ROWS_PER_BATCH, 0)
    if not batches:
        return 0
    vendor, used = connection.vendor, ROWS_PER_BATCH - 1
    marker = _stamp(30, start)
    mine = "b.user_id = %s AND b.created_at = %s"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(BATCH_COLUMNS + f"SELECT {new_id(vendor)}, %s, %s, %s, 0, %s, "
                       f"'EXHAUSTED', %s FROM {series(vendor)} t",
                       [user.pk, product.pk, used, marker, marker, batches])
        _credits_for(cursor, vendor, mine, [user.pk, marker])
        cursor.execute(LEDGER_COLUMNS + f"SELECT {new_id(vendor)}, b.user_id, b.id, 1, 'DEBIT', "
                       "'usage', '{}', b.created_at FROM billable_quota_batches b CROSS JOIN "
                       f"{series(vendor)} t WHERE {mine}", [used, user.pk, marker])
        cursor.execute(
            "INSERT INTO billable_idempotency_keys (user_id, key, operation, fingerprint, "
            f"result, created_at) SELECT %s, %s || n, 'consume', 'history', '{{}}', %s "
            f"FROM {series(vendor)} t", [user.pk, f"history-{start}-", marker, batches * used])
    return batches * ROWS_PER_BATCH


def add_batches(user: Any, product: Any, count: int, *, quantity: int) -> None:
    """Give ``user`` ``count`` spendable batches of ``quantity`` units (oldest first in spend
    order), each with its CREDIT row."""
    from django.db import connection, transaction

    vendor = connection.vendor
    marker = _stamp(1)
    step = "n * interval '1 millisecond'" if vendor == "postgresql" else None
    created = (f"(%s::timestamptz + {step})" if step
               else "strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '+' || n || ' seconds')")
    mine = "b.user_id = %s AND b.product_id = %s AND b.state = 'ACTIVE'"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(BATCH_COLUMNS + f"SELECT {new_id(vendor)}, %s, %s, %s, %s, %s, 'ACTIVE', "
                       f"{created} FROM {series(vendor)} t",
                       [user.pk, product.pk, quantity, quantity, marker, marker, count])
        _credits_for(cursor, vendor, mine, [user.pk, product.pk])


def add_telegram_users(first: int, count: int, product: Any, *, quantity: int,
                       names: tuple[str, str, str]) -> None:
    """``count`` accounts with Telegram ids ``first`` … ``first + count − 1``: the user row
    (username ``tg<id>``), the identity and one batch each.

    The identity stores the profile the bot will see (``username`` ``user<id>`` and ``names`` =
    first name, last name, language code), so the bot's first sight of a user reads, never
    writes."""
    from django.db import connection, transaction

    vendor = connection.vendor
    now = _stamp(0)
    build, text = (("jsonb_build_object", "::text") if vendor == "postgresql"
                   else ("json_object", ""))
    tg_id = "substr(u.username, 3)"
    new_users = f"FROM auth_user u WHERE u.username LIKE '{TG_PREFIX}%%' AND u.id > %s"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM auth_user")
        before = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            f"SELECT '!', %s, %s || (n + %s), '', '', '', %s, %s, %s FROM {series(vendor)} t",
            [False, TG_PREFIX, first - 1, False, True, now, count])
        cursor.execute(
            "INSERT INTO billable_external_identities (provider, external_id, user_id, metadata, "
            f"created_at, updated_at) SELECT 'telegram', {tg_id}, u.id, {build}('username', "
            f"'user' || {tg_id}, 'first_name', %s{text}, 'last_name', %s{text}, "
            f"'language_code', %s{text}), "
            f"%s, %s {new_users}", [*names, now, now, before])
        cursor.execute(BATCH_COLUMNS + f"SELECT {new_id(vendor)}, u.id, %s, %s, %s, %s, 'ACTIVE', "
                       f"%s {new_users}", [product.pk, quantity, quantity, now, now, before])
        _credits_for(cursor, vendor, "b.user_id > %s AND b.product_id = %s", [before, product.pk])


__all__ = ["add_batches", "add_telegram_users", "fill_history", "series"]
