"""Hand-written SQL for the hot paths: the spendable read, the batch lock, the take, the insert.

``check_quota``, ``get_balance`` and ``consume_quota`` run on every gated request, so their
statements are written once here instead of being rebuilt by the ORM on each call (building and
compiling a queryset costs more than executing it on SQLite). The SQL applies exactly the rule of
``QuotaBatch.objects.spendable`` (state ``ACTIVE``, ``remaining > 0``, ``valid_from <= now``,
``expires_at`` null or later than now); table and column names come from the models' ``_meta``
and values are adapted by the model fields, so the statements follow the schema and the backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from billable.models import (
    IdempotencyKey,
    Product,
    QuotaBatch,
    Reservation,
    ReservationItem,
    Transaction,
)


@dataclass
class Lot:
    """A locked spendable batch, as much of it as the spending code needs."""

    pk: Any
    remaining_quantity: int
    created_at: Any
    expires_at: Any
    product_id: Any
    is_entitlement: bool


def _conn() -> BaseDatabaseWrapper:
    """The default connection, fetched once per statement (the proxy costs a lookup per use)."""
    return connections[DEFAULT_DB_ALIAS]


def _table(model: type[models.Model]) -> str:
    return _conn().ops.quote_name(model._meta.db_table)


def _col(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return _conn().ops.quote_name(str(field.column))


@cache
def _spendable_from(vendor: str) -> str:
    b, p = QuotaBatch, Product
    return (
        f"FROM {_table(b)} b INNER JOIN {_table(p)} p ON p.{_col(p, 'id')} = b.{_col(b, 'product')}"
        f" WHERE b.{_col(b, 'user')} = %s AND p.{_col(p, 'product_key')} = %s"
        f" AND b.{_col(b, 'state')} = %s AND b.{_col(b, 'remaining_quantity')} > 0"
        f" AND b.{_col(b, 'valid_from')} <= %s"
        f" AND (b.{_col(b, 'expires_at')} IS NULL OR b.{_col(b, 'expires_at')} > %s)"
    )


def _params(conn: BaseDatabaseWrapper, user_id: Any, key: str, now: datetime) -> list[Any]:
    moment = conn.ops.adapt_datetimefield_value(now)
    return [user_id, key, "ACTIVE", moment, moment]


@cache
def _summary_sql(vendor: str) -> str:
    return (f"SELECT p.{_col(Product, 'name')}, SUM(b.{_col(QuotaBatch, 'remaining_quantity')}) "
            f"{_spendable_from(vendor)} GROUP BY p.{_col(Product, 'name')}")


def spendable_summary(user_id: Any, key: str, now: datetime) -> tuple[str, int] | None:
    """``(product name, spendable total)`` of ``key`` for the user, or ``None`` (one query)."""
    conn = _conn()
    with conn.cursor() as cursor:
        cursor.execute(_summary_sql(conn.vendor), _params(conn, user_id, key, now))
        row = cursor.fetchone()
    return (str(row[0]), int(row[1])) if row and row[1] else None


def _row_lock(alias: str) -> str:
    """``FOR NO KEY UPDATE OF <alias>`` where supported (PostgreSQL), else nothing (SQLite).

    ``NO KEY UPDATE`` is the lock an ``UPDATE`` of non-key columns takes anyway; unlike ``FOR
    UPDATE`` it does not conflict with the ``KEY SHARE`` locks that inserting a row with a
    foreign key takes on the referenced row (ledger rows, hold items), so those inserts never
    join a lock cycle.
    """
    features = _conn().features
    if features.has_select_for_no_key_update and features.has_select_for_update_of:
        return f" FOR NO KEY UPDATE OF {alias}"
    return f" FOR UPDATE OF {alias}" if features.has_select_for_update_of else ""


@cache
def _lock_sql(vendor: str) -> str:
    b, p = QuotaBatch, Product
    lock = _row_lock("b")
    return (
        f"SELECT b.{_col(b, 'id')}, b.{_col(b, 'remaining_quantity')}, b.{_col(b, 'created_at')},"
        f" b.{_col(b, 'expires_at')}, b.{_col(b, 'product')}, p.{_col(p, 'product_type')} "
        f"{_spendable_from(vendor)} ORDER BY b.{_col(b, 'id')}{lock}"
    )


def lock_spendable_lots(user_id: Any, key: str, now: datetime) -> list[Lot]:
    """Lock the user's spendable batches of ``key`` in primary-key order (one query)."""
    entitlements = (Product.ProductType.PERIOD, Product.ProductType.UNLIMITED)
    conn = _conn()
    with conn.cursor() as cursor:
        cursor.execute(_lock_sql(conn.vendor), _params(conn, user_id, key, now))
        rows = cursor.fetchall()
    return [Lot(pk, left, created, expires, product_id, kind in entitlements)
            for pk, left, created, expires, product_id, kind in rows]


@cache
def _take_sql(vendor: str) -> str:
    b = QuotaBatch
    left, state = _col(b, "remaining_quantity"), _col(b, "state")
    return (f"UPDATE {_table(b)} SET {left} = {left} - %s, "
            f"{state} = CASE WHEN {left} = %s THEN %s ELSE {state} END "
            f"WHERE {_col(b, 'id')} = %s AND {state} = %s AND {left} >= %s")


def take(lot: Lot, amount: int) -> bool:
    """Conditionally take ``amount`` from ``lot``; False when the row changed underneath."""
    params = [amount, amount, "EXHAUSTED", lot.pk, "ACTIVE", amount]
    conn = _conn()
    with conn.cursor() as cursor:
        cursor.execute(_take_sql(conn.vendor), params)
        return bool(cursor.rowcount == 1)


LEDGER_FIELDS = ("id", "user", "quota_batch", "amount", "direction", "action_type",
                 "content_type", "object_id", "metadata", "created_at")


@dataclass
class LedgerRow:
    """One ledger row as plain values: inserted without building a model instance."""

    id: Any
    user_id: Any
    quota_batch_id: Any
    amount: int
    direction: str
    action_type: str
    content_type_id: Any
    object_id: str | None
    metadata: dict[str, Any]
    created_at: datetime

    def to_model(self) -> Transaction:
        """The saved :class:`Transaction` this row is (built only for signal receivers).

        Values are passed through the model fields' ``to_python``, so receivers see the types
        an ORM read gives (``UUID`` for ``id`` / ``quota_batch_id``, never the hex string a raw
        SQLite cursor returns), whichever path wrote the row.
        """
        row = Transaction(**{f.attname: f.to_python(v) for f, v in zip(
            _ledger_fields(), self._values(), strict=True)})
        row._state.adding = False
        row._state.db = DEFAULT_DB_ALIAS
        return row

    def _values(self) -> tuple[Any, ...]:
        return (self.id, self.user_id, self.quota_batch_id, self.amount, self.direction,
                self.action_type, self.content_type_id, self.object_id, self.metadata,
                self.created_at)


@cache
def _ledger_fields() -> tuple[models.Field, ...]:
    fields = (Transaction._meta.get_field(name) for name in LEDGER_FIELDS)
    return tuple(f for f in fields if isinstance(f, models.Field))


@cache
def _insert_sql(vendor: str, count: int) -> str:
    columns = ", ".join(_conn().ops.quote_name(str(f.column)) for f in _ledger_fields())
    row = "(" + ", ".join(["%s"] * len(LEDGER_FIELDS)) + ")"
    return f"INSERT INTO {_table(Transaction)} ({columns}) VALUES {', '.join([row] * count)}"


def insert_ledger(rows: list[LedgerRow]) -> None:
    """Insert ledger rows in one multi-row ``INSERT``; values are adapted by the model fields."""
    if not rows:
        return
    conn = _conn()
    fields = _ledger_fields()
    params: list[Any] = []
    for row in rows:
        params += [f.get_db_prep_save(v, conn) for f, v in zip(fields, row._values(),
                                                                  strict=True)]
    with conn.cursor() as cursor:
        cursor.execute(_insert_sql(conn.vendor, len(rows)), params)


def _prep(model: type[models.Model], name: str, value: Any, conn: BaseDatabaseWrapper) -> Any:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field.get_db_prep_save(value, conn)


@cache
def _values_sql(vendor: str, model: type[models.Model], names: tuple[str, ...], count: int
                ) -> str:
    columns = ", ".join(_col(model, name) for name in names)
    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    return f"INSERT INTO {_table(model)} ({columns}) VALUES {', '.join([row] * count)}"


@cache
def _fields(model: type[models.Model], names: tuple[str, ...]) -> tuple[models.Field, ...]:
    found = tuple(model._meta.get_field(name) for name in names)
    return tuple(f for f in found if isinstance(f, models.Field))


def insert_values(model: type[models.Model], names: tuple[str, ...],
                  rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (values in the order of the field ``names``) in one ``INSERT``."""
    if not rows:
        return
    conn = _conn()
    fields = _fields(model, names)
    params = [field.get_db_prep_save(value, conn) for row in rows
              for field, value in zip(fields, row, strict=True)]
    with conn.cursor() as cursor:
        cursor.execute(_values_sql(conn.vendor, model, names, len(rows)), params)


KEY_FIELDS = ("user", "key", "operation", "fingerprint", "result", "created_at")


@cache
def _key_sql(vendor: str) -> str:
    k = IdempotencyKey
    insert = _values_sql(vendor, k, KEY_FIELDS, 1)
    return f"{insert} ON CONFLICT ({_col(k, 'user')}, {_col(k, 'key')}) DO NOTHING"


def insert_key(user_id: Any, key: str, *, operation: str, fingerprint: str,
               result: dict[str, Any], now: datetime) -> bool:
    """Insert an idempotency key row; False when ``(user, key)`` exists (one statement).

    ``ON CONFLICT DO NOTHING`` needs no savepoint: a concurrent insert of the same key makes
    this statement wait for that transaction, then do nothing (it committed) or insert (it
    rolled back) — the unique index decides, exactly as with a plain ``INSERT``.
    """
    conn = _conn()
    values = (user_id, key, operation, fingerprint, result, now)
    params = [field.get_db_prep_save(value, conn)
              for field, value in zip(_fields(IdempotencyKey, KEY_FIELDS), values, strict=True)]
    with conn.cursor() as cursor:
        cursor.execute(_key_sql(conn.vendor), params)
        return bool(cursor.rowcount == 1)


@dataclass
class HoldRow:
    """A locked reservation with what settling it needs (its product and its items)."""

    pk: Any
    user_id: Any
    product_id: Any
    amount: int
    committed_amount: int
    state: str
    action_type: str
    metadata: dict[str, Any]
    live: bool
    product_key: str
    is_entitlement: bool
    parts: list[tuple[Any, int]]


@cache
def _hold_sql(vendor: str) -> str:
    r, p, i = Reservation, Product, ReservationItem
    names = ("id", "user", "product", "amount", "committed_amount", "state", "action_type",
             "metadata")
    lock = _row_lock("r")
    return (
        f"SELECT {', '.join(f'r.{_col(r, n)}' for n in names)},"
        f" CASE WHEN r.{_col(r, 'expires_at')} > %s THEN 1 ELSE 0 END,"
        f" p.{_col(p, 'product_key')}, p.{_col(p, 'product_type')},"
        f" i.{_col(i, 'quota_batch')}, i.{_col(i, 'amount')}"
        f" FROM {_table(r)} r"
        f" INNER JOIN {_table(p)} p ON p.{_col(p, 'id')} = r.{_col(r, 'product')}"
        f" LEFT JOIN {_table(i)} i ON i.{_col(i, 'reservation')} = r.{_col(r, 'id')}"
        f" WHERE r.{_col(r, 'id')} = %s ORDER BY i.{_col(i, 'id')}{lock}"
    )


def lock_hold(reservation_id: Any, now: datetime) -> HoldRow | None:
    """Lock one reservation and read it with its product and items (one query), or ``None``."""
    conn = _conn()
    params = [conn.ops.adapt_datetimefield_value(now),
              _prep(Reservation, "id", reservation_id, conn)]
    with conn.cursor() as cursor:
        cursor.execute(_hold_sql(conn.vendor), params)
        rows = cursor.fetchall()
    if not rows:
        return None
    first = rows[0]
    entitlements = (Product.ProductType.PERIOD, Product.ProductType.UNLIMITED)
    return HoldRow(
        pk=reservation_id, user_id=first[1], product_id=first[2], amount=int(first[3]),
        committed_amount=int(first[4]), state=str(first[5]), action_type=str(first[6]),
        metadata=_json(first[7]), live=bool(first[8]),
        product_key=str(first[9]), is_entitlement=first[10] in entitlements,
        parts=[(row[11], int(row[12])) for row in rows if row[11] is not None],
    )


def _json(value: Any) -> dict[str, Any]:
    """A JSON column read by a raw cursor: text on SQLite, text or decoded on PostgreSQL."""
    decoded = json.loads(value) if isinstance(value, (str, bytes)) else value
    return dict(decoded) if isinstance(decoded, dict) else {}


@cache
def _finish_sql(vendor: str) -> str:
    r = Reservation
    return (f"UPDATE {_table(r)} SET {_col(r, 'state')} = %s, {_col(r, 'committed_amount')} = %s,"
            f" {_col(r, 'settled_at')} = %s WHERE {_col(r, 'id')} = %s AND {_col(r, 'state')} = %s")


def finish_hold(reservation_id: Any, *, state: str, committed: int, now: datetime) -> bool:
    """Move a ``HELD`` reservation to ``state``; False when it was not ``HELD`` any more."""
    conn = _conn()
    params = [state, committed, conn.ops.adapt_datetimefield_value(now),
              _prep(Reservation, "id", reservation_id, conn), "HELD"]
    with conn.cursor() as cursor:
        cursor.execute(_finish_sql(conn.vendor), params)
        return bool(cursor.rowcount == 1)


__all__ = ["HoldRow", "LedgerRow", "Lot", "finish_hold", "insert_key", "insert_ledger",
           "insert_values",
           "lock_hold", "lock_spendable_lots", "spendable_summary", "take"]
