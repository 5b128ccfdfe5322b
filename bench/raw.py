"""The physical-limit baselines: a consume and a balance check written as raw SQL.

They do the minimum correct work of ``consume_quota`` and ``check_quota`` for a user whose
spendable balance sits in one batch: the same spendable rule, the same row lock, the same DEBIT
row, on the same Django connection (same driver). Nothing else — no validation, no idempotency,
no signals, no Python between statements — so the gap to the service is the cost of the code
around the SQL, not of the SQL.

* PostgreSQL: the consume is **one** statement — lock the first spendable batch, take the unit,
  write the DEBIT (``WITH lot AS (SELECT … FOR UPDATE), spent AS (UPDATE … RETURNING …)
  INSERT … SELECT … FROM spent``) — run in autocommit, so the COMMIT travels with it: one round
  trip.
* SQLite has no data-modifying CTE: ``UPDATE … RETURNING`` and the ``INSERT`` run in one
  transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), which is the least SQLite can do.
* The check is one aggregate over the user's batches of the product, whose id and name are
  looked up once (a catalog rarely changes, so a cache can serve them): one query on one table.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

SPENDABLE = ("FROM billable_quota_batches b JOIN billable_products p ON p.id = b.product_id "
             "WHERE b.user_id = %s AND p.product_key = %s AND b.state = 'ACTIVE' "
             "AND b.remaining_quantity >= %s AND b.valid_from <= %s "
             "AND (b.expires_at IS NULL OR b.expires_at > %s)")
TAKE = ("remaining_quantity = remaining_quantity - %s, "
        "state = CASE WHEN remaining_quantity = %s THEN 'EXHAUSTED' ELSE state END")
DEBIT_COLUMNS = ("INSERT INTO billable_transactions (id, user_id, quota_batch_id, amount, "
                 "direction, action_type, metadata, created_at) ")

PG_CONSUME = (
    f"WITH lot AS (SELECT b.id {SPENDABLE} ORDER BY b.created_at, b.id LIMIT 1 FOR UPDATE OF b), "
    f"spent AS (UPDATE billable_quota_batches AS q SET {TAKE} "
    "FROM lot WHERE q.id = lot.id RETURNING q.id, q.user_id) "
    f"{DEBIT_COLUMNS}SELECT %s, spent.user_id, spent.id, %s, 'DEBIT', 'usage', %s::jsonb, %s "
    "FROM spent"
)
SQLITE_TAKE = (
    f"UPDATE billable_quota_batches SET {TAKE} WHERE id = (SELECT b.id {SPENDABLE} "
    "ORDER BY b.created_at, b.id LIMIT 1) RETURNING id"
)
SQLITE_DEBIT = f"{DEBIT_COLUMNS}VALUES (%s, %s, %s, %s, 'DEBIT', 'usage', %s, %s)"
CHECK = ("SELECT SUM(remaining_quantity) FROM billable_quota_batches WHERE user_id = %s "
         "AND product_id = %s AND state = 'ACTIVE' AND remaining_quantity > 0 "
         "AND valid_from <= %s AND (expires_at IS NULL OR expires_at > %s)")


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (version 7), like the ledger's primary keys: inserts land at the
    right edge of the index on both sides of the comparison."""
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | (0x7 << 76) | (int.from_bytes(os.urandom(10)) & ((1 << 76) - 1))
    value = (value & ~(0b11 << 62)) | (0b10 << 62)
    return uuid.UUID(int=value)


class RawLedger:
    """Raw-SQL ``consume`` and ``check`` for one product on the default connection."""

    def __init__(self, product_key: str) -> None:
        from django.db import connection

        from billable.models import Transaction

        self.key = product_key
        self.connection = connection
        self.id_field = Transaction._meta.get_field("id")
        self.postgres = connection.vendor == "postgresql"
        self.no_key = json.dumps({"idempotency_key": None})
        self.product: tuple[Any, str] | None = None

    def _now(self) -> Any:
        from django.utils import timezone

        return self.connection.ops.adapt_datetimefield_value(timezone.now())

    def _new_id(self) -> Any:
        return self.id_field.get_db_prep_value(uuid7(), self.connection)

    def consume(self, user_id: Any, amount: int = 1) -> None:
        """Take ``amount`` units from the user's first spendable batch and write the DEBIT."""
        now = self._now()
        spendable = [user_id, self.key, amount, now, now]
        if self.postgres:
            with self.connection.cursor() as cursor:
                cursor.execute(PG_CONSUME, [*spendable, amount, amount, self._new_id(), amount,
                                            self.no_key, now])
                written = cursor.rowcount
        else:
            from django.db import transaction

            with transaction.atomic(), self.connection.cursor() as cursor:
                cursor.execute(SQLITE_TAKE, [amount, amount, *spendable])
                row = cursor.fetchone()
                if row is not None:
                    cursor.execute(SQLITE_DEBIT, [self._new_id(), user_id, row[0], amount,
                                                  self.no_key, now])
                written = 0 if row is None else cursor.rowcount
        if written != 1:
            raise RuntimeError(f"raw consume found nothing to spend for user {user_id}")

    def check(self, user_id: Any) -> tuple[str, int]:
        """The ``check_quota`` read: product name and spendable total (one query)."""
        if self.product is None:
            from billable.models import Product

            found = Product.objects.get(product_key=self.key)
            self.product = (found.pk, found.name)
        now = self._now()
        with self.connection.cursor() as cursor:
            cursor.execute(CHECK, [user_id, self.product[0], now, now])
            row = cursor.fetchone()
        return self.product[1], int(row[0] or 0)


__all__ = ["RawLedger", "uuid7"]
