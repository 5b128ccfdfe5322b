"""The engine's only raw SQL: hot-path statements compiled once per database alias.

``check_quota``, ``get_balance``, ``consume_quota`` and the bot's gating hold run on every gated
request. Building and compiling a queryset costs more than executing it (on SQLite), and the
equivalent ORM ``update()`` is 31–35× slower than one prepared statement, so each statement is
compiled **once per database alias** and then executed with a plain cursor:

* Reads and updates are compiled from ORM querysets (``QuotaBatch.objects.spendable`` for the
  spendable rule, ``.update(...)`` for the conditional take and the hold settlement, the
  reverse join for holds): the ORM writes the SQL, so table and column names, quoting, joins,
  the row lock clause (``FOR NO KEY UPDATE OF`` where supported) and the state values (from the
  model enums) follow the models and the backend. The values that vary per call are compiled
  as *sentinels* and their positions recorded; a call substitutes its values there, adapted
  through the model fields exactly as the ORM would.
* Multi-row inserts (ledger rows, holds, idempotency keys) are written from the models'
  ``_meta`` (quoted column names, values adapted with ``get_db_prep_save``): the ORM's bulk
  insert cannot be compiled once for any row count, and the key insert needs
  ``ON CONFLICT (user, key) DO NOTHING``.
* Rows are read by name, never by position: a ``namedtuple`` per statement, or for the many
  rows of a batch lock an ``itemgetter`` of the named columns built once.

Only the dialects in :data:`SUPPORTED_VENDORS` are supported; ``billable.checks`` refuses any
other backend at start-up (``billable.E006``).
"""

from __future__ import annotations

import json
import re
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from operator import itemgetter
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, DataError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, F, Func, OuterRef, Subquery, Value, When
from django.db.models.sql import UpdateQuery

from billable.models import (
    ExternalIdentity,
    IdempotencyKey,
    Product,
    QuotaBatch,
    Reservation,
    ReservationItem,
    Transaction,
)

ACTIVE = QuotaBatch.State.ACTIVE
EXHAUSTED = QuotaBatch.State.EXHAUSTED
HELD = Reservation.State.HELD
COMMITTED = Reservation.State.COMMITTED
ENTITLEMENTS = frozenset({Product.ProductType.PERIOD, Product.ProductType.UNLIMITED})


class Slot(Enum):
    """A per-call value of a compiled statement (its sentinel marks where it goes)."""

    USER = "user"
    KEY = "key"
    NOW = "now"
    PK = "pk"
    AMOUNT = "amount"
    STATE = "state"
    COMMITTED = "committed"
    PROVIDER = "provider"
    EXTERNAL_ID = "external_id"


#: Compile-time stand-ins; never equal to a constant of the statements they mark.
_SENTINELS: dict[Slot, Any] = {
    Slot.KEY: "__BILLABLE_SENTINEL_KEY__",
    Slot.NOW: datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC),
    Slot.PK: UUID("0badc0de-0000-4000-8000-00000000beef"),
    Slot.AMOUNT: 1_999_999_973,
    Slot.STATE: "__BILLABLE_SENTINEL_STATE__",
    Slot.COMMITTED: 1_999_999_979,
    Slot.PROVIDER: "__BILLABLE_SENTINEL_PROVIDER__",
    Slot.EXTERNAL_ID: "__BILLABLE_SENTINEL_EXTERNAL_ID__",
}


def _user_sentinel() -> Any:
    """A user primary key of the user model's pk type (int, UUID or text)."""
    target = QuotaBatch._meta.get_field("user").target_field
    if isinstance(target, models.UUIDField):
        return UUID("0badc0de-0000-4000-8000-0000000005e2")
    if isinstance(target, (models.AutoField, models.IntegerField)):
        return 1_999_999_983
    return "__BILLABLE_SENTINEL_USER__"


@dataclass(frozen=True)
class Compiled:
    """One statement of one alias, ready to run: its SQL and a plan for its parameters.

    ``template`` holds the constant parameters (state values, zeros) with ``None`` where a
    per-call value goes; ``positions`` maps each such parameter to the index of its value in
    the call's tuple (the order of the ``slots`` it was compiled with); ``adapters`` adapt each
    value as the ORM would (``None``: passed as is). ``row`` reads result rows by name.
    """

    sql: str
    template: tuple[Any, ...]
    positions: tuple[tuple[int, int], ...]
    adapters: tuple[Callable[[Any], Any] | None, ...]
    row: Any = None
    columns: tuple[str, ...] = ()
    #: Each parameter as ``(constant, -1)`` or ``(None, slot)``: ``template`` and ``positions``
    #: in the one shape :meth:`params` walks.
    plan: tuple[tuple[Any, int], ...] = ()

    def pick(self, *names: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """A getter of the named columns of a row (resolved once, applied in C per row)."""
        return itemgetter(*(self.columns.index(name) for name in names))

    def params(self, values: Sequence[Any]) -> list[Any]:
        adapted = [v if a is None else a(v) for a, v in zip(self.adapters, values, strict=True)]
        return [constant if slot < 0 else adapted[slot] for constant, slot in self.plan]


def _compile(alias: str, build: Callable[[], Any], slots: Sequence[Slot],
             names: Sequence[str] = ()) -> Compiled:
    """Compile the query ``build()`` returns; parameters equal to a sentinel become slots.

    Compiled inside a (cheap, one-off) atomic block: Django refuses to compile a
    ``select_for_update`` query in autocommit mode.
    """
    conn = connections[alias]
    adapters = tuple(_adapter(slot, conn) for slot in slots)
    prepared = {_prepared(slot, conn): index for index, slot in enumerate(slots)}
    with transaction.atomic(using=alias):
        query = build()
        if not isinstance(query, UpdateQuery):
            query = query.clone()
            query.bump_prefix(query)  # short table aliases (U0, U1 …): a shorter statement
        sql, params = query.get_compiler(using=alias).as_sql()
    # The statement text is scanned on every execution (placeholder conversion on SQLite), so
    # what only adds length goes: column aliases (rows are read by name through ``row``) and,
    # in a single-table UPDATE, the table name qualifying every column.
    if isinstance(query, UpdateQuery):
        sql = sql.replace(conn.ops.quote_name(query.get_meta().db_table) + ".", "")
    else:
        sql = _COLUMN_ALIAS.sub("", sql)
    template: list[Any] = []
    positions: list[tuple[int, int]] = []
    for index, param in enumerate(params):
        slot = prepared.get(param) if _hashable(param) else None
        if slot is None:
            template.append(_plain(param))
        else:
            template.append(None)
            positions.append((index, slot))
    if {slot for _, slot in positions} != set(range(len(slots))):  # pragma: no cover
        raise RuntimeError(f"billable: could not place every value of {slots} in {sql}")
    row = namedtuple("Row", names, rename=True) if names else None
    slot_at = dict(positions)
    plan = tuple((constant, slot_at.get(index, -1)) for index, constant in enumerate(template))
    return Compiled(sql, tuple(template), tuple(positions), adapters, row, tuple(names), plan)


_COLUMN_ALIAS = re.compile(r' AS "[A-Za-z_][A-Za-z0-9_]*"')


def _plain(value: Any) -> Any:
    """A model enum member as its plain value (drivers adapt exact ``str``/``int`` fastest)."""
    return value.value if isinstance(value, Enum) else value


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _sentinel(slot: Slot) -> Any:
    return _user_sentinel() if slot is Slot.USER else _SENTINELS[slot]


def _adapter(slot: Slot, conn: BaseDatabaseWrapper) -> Callable[[Any], Any] | None:
    """How a per-call value reaches the driver: as the ORM would adapt it (``None``: as is)."""
    if slot is Slot.NOW:
        return conn.ops.adapt_datetimefield_value
    if slot is Slot.USER:
        target = _user_field()
        if isinstance(target, (models.AutoField, models.IntegerField)):
            return None  # an int already (billable.validation.coerce_user_id)
        return lambda value: target.get_db_prep_value(value, conn)
    if slot is Slot.PK and not conn.features.has_native_uuid_field:
        return lambda value: value.hex if isinstance(value, UUID) else value
    return None


def _prepared(slot: Slot, conn: BaseDatabaseWrapper) -> Any:
    """The sentinel of ``slot`` as the compiled query holds it (adapted by the model field)."""
    value = _sentinel(slot)
    if slot is Slot.USER:
        return _user_field().get_db_prep_value(value, conn)
    if slot is Slot.PK:
        return _uuid_field().get_db_prep_value(value, conn)
    adapter = _adapter(slot, conn)
    return value if adapter is None else adapter(value)


@cache
def _user_field() -> models.Field[Any, Any]:
    return QuotaBatch._meta.get_field("user").target_field


@cache
def _uuid_field() -> models.Field[Any, Any]:
    field = QuotaBatch._meta.pk
    assert field is not None
    return field


def _read_cursor(alias: str) -> Any:
    """A cursor for a hot read: on psycopg 3, parameters bound by the server.

    Django's psycopg 3 cursors bind on the client (``server_side_binding`` off, the default):
    every value is quoted into the statement text in Python and the server parses it back.
    Sent beside the statement instead (the extended protocol, an unnamed statement), the
    balance read costs ~12 % less end to end. Django's ``prepare_threshold`` stays in force
    (off by default: nothing is prepared, so transaction-mode poolers keep working). The
    psycopg cursor is wrapped exactly as ``connection.cursor()`` wraps its own: query logging,
    ``execute_wrapper`` hooks and error translation are Django's.
    """
    conn = connections[alias]
    if conn.vendor != "postgresql":  # decided first: a SQLite read pays nothing more
        return conn.cursor()
    # psycopg 3's cursor that binds on the server (psycopg2 has none: Django's cursor then).
    bound = getattr(getattr(conn, "Database", None), "Cursor", None)
    if bound is None or conn.settings_dict["OPTIONS"].get("server_side_binding"):
        return conn.cursor()
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        raw = bound(conn.connection)
    conn.validate_thread_sharing()
    return conn.make_debug_cursor(raw) if conn.queries_logged else conn.make_cursor(raw)


def _run(alias: str, compiled: Compiled, values: Sequence[Any]) -> Any:
    cursor = connections[alias].cursor()
    cursor.execute(compiled.sql, compiled.params(values))
    return cursor


# -- the spendable rule ---------------------------------------------------------------------------


def _spendable(alias: str) -> Any:
    """``QuotaBatch.objects.spendable`` (the one rule) for one user and one product key."""
    now, user, key = _sentinel(Slot.NOW), _sentinel(Slot.USER), _sentinel(Slot.KEY)
    return (QuotaBatch.objects.using(alias).spendable(now)
            .filter(user_id=user, product__product_key=key))


#: ``SUM(remaining_quantity)`` as a plain function: an aggregate over the subquery's rows without
#: the ``GROUP BY`` Django adds for ``Sum`` in ``annotate`` (the rows are one product's anyway).
_SUM_OF_ROWS = Func(F("remaining_quantity"), function="SUM", output_field=models.IntegerField())


@cache
def _summary_sql(alias: str) -> Compiled:
    """The product row of the key, with the user's spendable total as a scalar subquery.

    Not a join grouped by product name: the product is found through its unique key and its id
    goes into the batch probe as a value (the wallet index ``(user, product, state …)`` is
    searched on all three columns), so the planner has one small plan to make per call. No row:
    no such product; a ``NULL`` total: nothing spendable.
    """
    def build() -> Any:
        spendable = (QuotaBatch.objects.using(alias).spendable(_sentinel(Slot.NOW))
                     .filter(user_id=_sentinel(Slot.USER), product_id=OuterRef("pk"))
                     .order_by().annotate(total=_SUM_OF_ROWS).values("total"))
        return (Product.objects.using(alias).filter(product_key=_sentinel(Slot.KEY))
                .order_by().values_list("name", Subquery(spendable)).query)
    return _compile(alias, build, (Slot.USER, Slot.KEY, Slot.NOW), ("name", "total"))


def spendable_summary(*, user_id: Any, key: str, now: datetime,
                      using: str = DEFAULT_DB_ALIAS) -> tuple[str, int] | None:
    """``(product name, spendable total)`` of ``key`` for the user, or ``None`` (one query)."""
    compiled = _summary_sql(using)
    with _read_cursor(using) as cursor:
        cursor.execute(compiled.sql, compiled.params((user_id, key, now)))
        found = cursor.fetchone()
    if not found:
        return None
    name, total = _name_and_total(using)(found)
    return (str(name), int(total)) if total else None


@cache
def _name_and_total(alias: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The summary row's ``(name, total)``, picked by column name once per alias."""
    return _summary_sql(alias).pick("name", "total")


@dataclass
class Lot:
    """A locked spendable batch, as much of it as the spending code needs."""

    pk: Any
    remaining_quantity: int
    created_at: Any
    expires_at: Any
    product_id: Any
    is_entitlement: bool


LOT_FIELDS = ("id", "remaining_quantity", "created_at", "expires_at", "product_id",
              "product__product_type")


@cache
def _lock_sql(alias: str) -> Compiled:
    def build() -> Any:
        return (_spendable(alias).order_by("id").select_for_update(of=("self",), no_key=True)
                .values_list(*LOT_FIELDS).query)
    return _compile(alias, build, (Slot.USER, Slot.KEY, Slot.NOW),
                    ("id", "remaining_quantity", "created_at", "expires_at", "product_id",
                     "product_type"))


def lock_spendable_lots(*, user_id: Any, key: str, now: datetime,
                        using: str = DEFAULT_DB_ALIAS) -> list[Lot]:
    """Lock the user's spendable batches of ``key`` in primary-key order (one query)."""
    compiled = _lock_sql(using)
    with _run(using, compiled, (user_id, key, now)) as cursor:
        found = cursor.fetchall()
    return [Lot(pk, left, created, expires, product, kind in ENTITLEMENTS)
            for pk, left, created, expires, product, kind in map(_lot_columns(using), found)]


@cache
def _lot_columns(alias: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    return _lock_sql(alias).pick("id", "remaining_quantity", "created_at", "expires_at",
                                 "product_id", "product_type")


# -- batch and hold updates -----------------------------------------------------------------------


def _update(alias: str, queryset: Any, values: dict[str, Any]) -> Any:
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    return query


def _taking(amount: Any) -> dict[str, Any]:
    """The values of a take: ``amount`` fewer units, ``EXHAUSTED`` when none are left."""
    return {
        "remaining_quantity": F("remaining_quantity") - amount,
        "state": Case(When(remaining_quantity=amount, then=Value(EXHAUSTED)),
                      default=F("state")),
    }


@cache
def _take_sql(alias: str) -> Compiled:
    pk, amount = _sentinel(Slot.PK), _sentinel(Slot.AMOUNT)

    def build() -> Any:
        batches = QuotaBatch.objects.using(alias).filter(
            pk=pk, state=ACTIVE, remaining_quantity__gte=amount)
        return _update(alias, batches, _taking(amount))
    return _compile(alias, build, (Slot.PK, Slot.AMOUNT))


def take(*, lot: Lot, amount: int, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Conditionally take ``amount`` from ``lot``; False when the row changed underneath."""
    with _run(using, _take_sql(using), (lot.pk, amount)) as cursor:
        return bool(cursor.rowcount == 1)


# -- the single-statement consume (PostgreSQL) ----------------------------------------------------

#: Backends with data-modifying CTEs: a consume covered by one batch is one statement there.
FIRST_LOT_VENDORS = frozenset({"postgresql"})


def _consumption_order(order: str) -> tuple[Any, ...]:
    """``wallet.consumption_key`` as an ``ORDER BY`` (the same keys, the same direction)."""
    if order == "expiring_first":
        return (F("expires_at").asc(nulls_last=True), "created_at", "id")
    return ("created_at", "id")


def _splice(compiled: Compiled, slot: int, text: str) -> tuple[str, int]:
    """The statement with the placeholder of ``slot`` replaced by SQL ``text``, and the index
    of the parameter that placeholder had (to be dropped from the call's parameters)."""
    [index] = [i for i, s in compiled.positions if s == slot]
    parts = compiled.sql.split("%s")
    if len(parts) != len(compiled.template) + 1:  # pragma: no cover
        raise RuntimeError(f"billable: unexpected placeholders in {compiled.sql}")
    return "%s".join(parts[:index + 1]) + text + "%s".join(parts[index + 1:]), index


@dataclass(frozen=True)
class FirstLot:
    """The one-statement consume of one alias and consumption order, and its parameter plan.

    ``keyed_sql`` is the same statement claiming an idempotency key first (the keyed consume,
    :func:`take_first_keyed`, and the async consume, :mod:`billable.ledger.fastconsume`): its
    parameters are the key row's, then ``sql``'s. ``keyed`` and ``unkeyed`` are ``keyed_sql``
    and ``sql`` for the async pool's raw cursor (:func:`raw`).
    """

    sql: str
    lot: Compiled
    take: Compiled
    dropped: int
    others: Compiled
    keyed: bytes = b""
    unkeyed: bytes = b""
    keyed_sql: str = ""


_Spent = namedtuple("_Spent", ("batch_id", "left"))


def _product_id(alias: str, **rule: Any) -> Any:
    """The id of the key's product as a value of the statement (an InitPlan), not a join: the
    user's batches are then read through the wallet index ``(user, product, state, created_at,
    id)`` in consumption order, so the first one costs the same however many the user holds."""
    return Subquery(Product.objects.using(alias).filter(product_key=_sentinel(Slot.KEY),
                                                        **rule).order_by().values("id"))


@cache
def _first_lot_sql(alias: str, order: str) -> FirstLot:
    """``WITH lot (first spendable batch in consumption order), spent (the conditional take of
    ``take`` on it, RETURNING its id and what is left), debit (the DEBIT row) SELECT`` the batch
    id and the balance left: the batch taken from plus the other spendable batches."""
    def first() -> Any:
        kinds = sorted(ENTITLEMENTS)
        return (QuotaBatch.objects.using(alias).spendable(_sentinel(Slot.NOW))
                .filter(user_id=_sentinel(Slot.USER),
                        product_id=_product_id(alias, product_type__in=[
                            k for k in Product.ProductType if k not in kinds]))
                .order_by(*_consumption_order(order)).values_list("id")[:1].query)

    def others() -> Any:
        return (QuotaBatch.objects.using(alias).spendable(_sentinel(Slot.NOW))
                .filter(user_id=_sentinel(Slot.USER), product_id=_product_id(alias))
                .order_by().values_list("id", "remaining_quantity").query)

    def taking() -> Any:
        # The take of the general path (``_take_sql``), plus the rest of what the general
        # path's lock re-checks on a row changed while it waited: still this user's (a merge
        # moves batches) and still spendable at ``now``.
        amount = _sentinel(Slot.AMOUNT)
        batches = (QuotaBatch.objects.using(alias).spendable(_sentinel(Slot.NOW))
                   .filter(pk=_sentinel(Slot.PK), user_id=_sentinel(Slot.USER), state=ACTIVE,
                           remaining_quantity__gte=amount))
        return _update(alias, batches, _taking(amount))

    lot = _compile(alias, first, (Slot.USER, Slot.KEY, Slot.NOW))
    take = _compile(alias, taking, (Slot.PK, Slot.AMOUNT, Slot.USER, Slot.NOW))
    rest = _compile(alias, others, (Slot.USER, Slot.KEY, Slot.NOW))
    update, dropped = _splice(take, 0, "(SELECT lot.id FROM lot)")
    quote = connections[alias].ops.quote_name
    pk, left = quote(str(_uuid_field().column)), quote("remaining_quantity")
    fields = _fields(Transaction, LEDGER_FIELDS)
    columns = ", ".join(quote(str(f.column)) for f in fields)
    values = ", ".join("spent.id" if f.name == "quota_batch" else "%s" for f in fields)
    body = (
        f"spent (id, left_over) AS ({update} RETURNING {pk}, {left}), "
        f"debit AS (INSERT INTO {quote(Transaction._meta.db_table)} ({columns}) "
        f"SELECT {values} FROM spent) "
        f"SELECT spent.id, spent.left_over + COALESCE((SELECT SUM(o.left_over) FROM "
        f"({rest.sql}) o (id, left_over) WHERE o.id <> spent.id), 0) FROM spent"
    )
    statement = f"WITH lot (id) AS ({lot.sql}), {body}"
    # Keyed: the key first (the global lock order: key, then batches), the batch only when the
    # key was claimed; a claimed key whose consume this statement cannot make aborts the whole
    # statement (a deliberate cast error), so the key never outlives a consume that did not
    # happen. A replayed key (the insert does nothing) touches nothing and returns no row.
    keyed = (
        f"WITH k AS ({_key_sql(alias)} RETURNING '{FAST_CONSUME_ABORT}'::text AS abort), "
        f"lot (id) AS (SELECT first_lot.id FROM ({lot.sql}) first_lot (id)"
        f" WHERE EXISTS (SELECT 1 FROM k)), {body}"
        f" UNION ALL SELECT NULL, CAST(k.abort AS integer) FROM k"
        f" WHERE NOT EXISTS (SELECT 1 FROM spent)"
    )
    return FirstLot(statement, lot, take, dropped, rest, raw(keyed), raw(statement), keyed)


#: The marker of a keyed one-statement consume that aborted itself (see
#: :func:`_first_lot_sql`).
FAST_CONSUME_ABORT = "billable-fast-consume-falls-back"

_FIRST_LOTS: dict[tuple[str, str], FirstLot] = {}


def first_lot(alias: str, order: str) -> FirstLot:
    """The single-statement consume of ``alias`` and ``order``, compiled once (sync: compiling
    a query opens a transaction)."""
    found = _FIRST_LOTS.get((alias, order))
    if found is None:
        found = _FIRST_LOTS[(alias, order)] = _first_lot_sql(alias, order)
    return found


def first_lot_cached(alias: str, order: str) -> FirstLot | None:
    """:func:`first_lot`, or ``None`` before it was compiled (no I/O: for the event loop)."""
    return _FIRST_LOTS.get((alias, order))


def first_lot_params(plan: FirstLot, *, row: LedgerRow, key: str, now: datetime,
                     using: str = DEFAULT_DB_ALIAS) -> list[Any]:
    """The parameters of ``plan.sql`` for consuming ``row.amount`` of ``key`` with ``row`` as
    the DEBIT (values adapted by the model fields, as the ORM would; no I/O)."""
    conn = connections[using]
    spot = (row.user_id, key, now)
    update = plan.take.params((None, row.amount, row.user_id, now))
    del update[plan.dropped]
    debit = [field.get_db_prep_save(value, conn) for field, value in
             zip(_fields(Transaction, LEDGER_FIELDS), row.values(), strict=True)
             if field.name != "quota_batch"]
    return [*plan.lot.params(spot), *update, *debit, *plan.others.params(spot)]


def key_params(*, user_id: Any, key: str, operation: str, fingerprint: str,
               result: dict[str, Any], now: datetime, using: str = DEFAULT_DB_ALIAS
               ) -> list[Any]:
    """The parameters of an idempotency key row (:func:`insert_key`; ``plan.keyed``)."""
    conn = connections[using]
    values = (user_id, key, operation, fingerprint, result, now)
    return [field.get_db_prep_save(value, conn)
            for field, value in zip(_fields(IdempotencyKey, KEY_FIELDS), values, strict=True)]


def take_first(*, row: LedgerRow, key: str, now: datetime, order: str,
               using: str = DEFAULT_DB_ALIAS) -> tuple[Any, int] | None:
    """Consume ``row.amount`` of ``key`` from the user's first spendable batch in ``order`` and
    write ``row`` as its DEBIT, in **one statement**; return ``(batch id, balance left)``.

    ``None`` (nothing written) when the backend has no data-modifying CTE, or the first batch
    does not cover the amount, is of a period / unlimited product, or there is none: the
    caller then runs the general path, in a fresh transaction (under ``READ COMMITTED`` an
    ``UPDATE`` that waited for a concurrent change of its row and then no longer matches keeps
    the row lock, which must not be held while the general path locks in primary-key order).

    The take is the general path's conditional ``UPDATE`` (``_take_sql``) aimed at the first
    batch, with everything the general path's lock re-checks on a row changed while it waited
    (the user — a merge moves batches —, the spendable rule): the batch chosen, the units taken
    and the state change are the same. The only row lock is that ``UPDATE``'s, on one batch.
    ``balance left`` is the batch taken from as it is now plus the other spendable batches as
    the statement read them (the general path reads them under its locks; either is the
    balance of a moment).
    """
    conn = connections[using]
    if conn.vendor not in FIRST_LOT_VENDORS:
        return None
    plan = first_lot(using, order)
    params = first_lot_params(plan, row=row, key=key, now=now, using=using)
    with conn.cursor() as cursor:
        cursor.execute(plan.sql, params)
        found = cursor.fetchone()
    if found is None:
        return None
    spent = _Spent._make(found)
    return spent.batch_id, int(spent.left)


def take_first_keyed(*, row: LedgerRow, key: str, now: datetime, order: str,
                     key_row: Sequence[Any], using: str = DEFAULT_DB_ALIAS
                     ) -> tuple[Any, int] | None:
    """:func:`take_first` claiming an idempotency key in the same statement (``key_row``:
    :func:`key_params`), in autocommit: the key, the take and the DEBIT commit together in one
    round trip. ``(batch id, balance left)``, or ``None`` — nothing written — for everything
    the caller's general path must decide: a key used before (a replay or a conflict: the
    insert does nothing, so nothing else is touched), or a claimed key whose consume this
    statement cannot make (it aborts itself with :data:`FAST_CONSUME_ABORT`, so the key goes
    with it), and what :func:`take_first` leaves to the general path."""
    conn = connections[using]
    if conn.vendor not in FIRST_LOT_VENDORS:
        return None
    plan = first_lot(using, order)
    params = [*key_row, *first_lot_params(plan, row=row, key=key, now=now, using=using)]
    try:
        with conn.cursor() as cursor:
            cursor.execute(plan.keyed_sql, params)
            found = cursor.fetchone()
    except DataError as exc:
        if FAST_CONSUME_ABORT in str(exc):
            return None
        raise
    if found is None or found[0] is None:
        return None
    spent = _Spent._make(found)
    return spent.batch_id, int(spent.left)


@cache
def _finish_sql(alias: str) -> Compiled:
    def build() -> Any:
        holds = Reservation.objects.using(alias).filter(pk=_sentinel(Slot.PK), state=HELD)
        return _update(alias, holds, {"state": _sentinel(Slot.STATE),
                                      "committed_amount": _sentinel(Slot.COMMITTED),
                                      "settled_at": _sentinel(Slot.NOW)})
    return _compile(alias, build, (Slot.PK, Slot.STATE, Slot.COMMITTED, Slot.NOW))


def finish_hold(*, reservation_id: Any, state: str, committed: int, now: datetime,
                using: str = DEFAULT_DB_ALIAS) -> bool:
    """Move a ``HELD`` reservation to ``state``; False when it was not ``HELD`` any more."""
    values = (reservation_id, str(state), committed, now)
    with _run(using, _finish_sql(using), values) as cursor:
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
    idempotency_key: str | None
    live: bool
    product_key: str
    is_entitlement: bool
    parts: list[tuple[Any, int]]


HOLD_NAMES = ("id", "user_id", "product_id", "amount", "committed_amount", "state",
              "action_type", "metadata", "idempotency_key", "live", "product_key",
              "product_type", "batch_id", "item_amount")


@cache
def _hold_sql(alias: str) -> Compiled:
    def build() -> Any:
        live = Case(When(expires_at__gt=_sentinel(Slot.NOW), then=Value(1)), default=Value(0))
        return (Reservation.objects.using(alias).filter(pk=_sentinel(Slot.PK))
                .annotate(live=live).order_by("items__id")
                .select_for_update(of=("self",), no_key=True)
                .values_list("id", "user_id", "product_id", "amount", "committed_amount",
                             "state", "action_type", "metadata", "idempotency_key", "live",
                             "product__product_key", "product__product_type",
                             "items__quota_batch_id", "items__amount").query)
    return _compile(alias, build, (Slot.NOW, Slot.PK), HOLD_NAMES)


def lock_hold(*, reservation_id: Any, now: datetime, using: str = DEFAULT_DB_ALIAS
              ) -> HoldRow | None:
    """Lock one reservation and read it with its product and items (one query), or ``None``."""
    compiled = _hold_sql(using)
    with _run(using, compiled, (now, reservation_id)) as cursor:
        found = cursor.fetchall()
    if not found:
        return None
    rows = [compiled.row._make(raw) for raw in found]
    first = rows[0]
    return HoldRow(
        pk=reservation_id, user_id=first.user_id, product_id=first.product_id,
        amount=int(first.amount), committed_amount=int(first.committed_amount),
        state=str(first.state), action_type=str(first.action_type),
        metadata=_json(first.metadata), idempotency_key=first.idempotency_key,
        live=bool(first.live),
        product_key=str(first.product_key), is_entitlement=first.product_type in ENTITLEMENTS,
        parts=[(row.batch_id, int(row.item_amount)) for row in rows if row.batch_id is not None],
    )


def _json(value: Any) -> dict[str, Any]:
    """A JSON column read by a raw cursor: text on SQLite, text or decoded on PostgreSQL."""
    decoded = json.loads(value) if isinstance(value, (str, bytes)) else value
    return dict(decoded) if isinstance(decoded, dict) else {}


# -- identities -----------------------------------------------------------------------------------


@cache
def _owner_sql(alias: str) -> Compiled:
    def build() -> Any:
        return (ExternalIdentity.objects.using(alias)
                .filter(provider=_sentinel(Slot.PROVIDER),
                        external_id=_sentinel(Slot.EXTERNAL_ID))
                .order_by().values_list("user_id").query)
    return _compile(alias, build, (Slot.PROVIDER, Slot.EXTERNAL_ID), ("user_id",))


def owner_of(*, provider: str, external_id: str, using: str = DEFAULT_DB_ALIAS) -> Any:
    """The ``user_id`` an external identity points to now, or ``None`` (one unique probe)."""
    compiled = _owner_sql(using)
    values = (provider, external_id)
    with _run(using, compiled, values) as cursor:
        found = cursor.fetchone()
    return compiled.row._make(found).user_id if found else None


# -- inserts --------------------------------------------------------------------------------------


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

    def to_model(self, using: str = DEFAULT_DB_ALIAS) -> Transaction:
        """The saved :class:`Transaction` this row is (built only for signal receivers).

        Values are passed through the model fields' ``to_python``, so receivers see the types
        an ORM read gives (``UUID`` for ``id`` / ``quota_batch_id``, never the hex string a raw
        SQLite cursor returns), whichever path wrote the row.
        """
        row = Transaction(**{f.attname: f.to_python(v) for f, v in zip(
            _fields(Transaction, LEDGER_FIELDS), self.values(), strict=True)})
        row._state.adding = False
        row._state.db = using
        return row

    def values(self) -> tuple[Any, ...]:
        return (self.id, self.user_id, self.quota_batch_id, self.amount, self.direction,
                self.action_type, self.content_type_id, self.object_id, self.metadata,
                self.created_at)


@cache
def _fields(model: type[models.Model], names: tuple[str, ...]
            ) -> tuple[models.Field[Any, Any], ...]:
    found = tuple(model._meta.get_field(name) for name in names)
    return tuple(f for f in found if isinstance(f, models.Field))


@cache
def _insert_sql(alias: str, model: type[models.Model], names: tuple[str, ...], count: int
                ) -> str:
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in _fields(model, names))
    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    values = ", ".join([row] * count)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {values}"


def insert_values(*, model: type[models.Model], names: tuple[str, ...],
                  rows: Sequence[tuple[Any, ...]], using: str = DEFAULT_DB_ALIAS) -> None:
    """Insert ``rows`` (values in the order of the field ``names``) in one ``INSERT``."""
    if not rows:
        return
    conn = connections[using]
    fields = _fields(model, names)
    params = [field.get_db_prep_save(value, conn) for row in rows
              for field, value in zip(fields, row, strict=True)]
    with conn.cursor() as cursor:
        cursor.execute(_insert_sql(using, model, names, len(rows)), params)


def insert_ledger(rows: Sequence[LedgerRow], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Insert ledger rows in one multi-row ``INSERT``; values are adapted by the model fields."""
    insert_values(model=Transaction, names=LEDGER_FIELDS, rows=[r.values() for r in rows],
                  using=using)


KEY_FIELDS = ("user", "key", "operation", "fingerprint", "result", "created_at")


@cache
def _key_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    user, key = (quote(str(f.column)) for f in _fields(IdempotencyKey, ("user", "key")))
    return (f"{_insert_sql(alias, IdempotencyKey, KEY_FIELDS, 1)}"
            f" ON CONFLICT ({user}, {key}) DO NOTHING")


def insert_key(*, user_id: Any, key: str, operation: str, fingerprint: str,
               result: dict[str, Any], now: datetime, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Insert an idempotency key row; False when ``(user, key)`` exists (one statement).

    ``ON CONFLICT DO NOTHING`` needs no savepoint: a concurrent insert of the same key makes
    this statement wait for that transaction, then do nothing (it committed) or insert (it
    rolled back) — the unique index decides, exactly as with a plain ``INSERT``.
    """
    params = key_params(user_id=user_id, key=key, operation=operation, fingerprint=fingerprint,
                        result=result, now=now, using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(_key_sql(using), params)
        return bool(cursor.rowcount == 1)



__all__ = ["FAST_CONSUME_ABORT", "FIRST_LOT_VENDORS", "FirstLot", "HoldRow", "LedgerRow", "Lot",
           "finish_hold", "first_lot", "first_lot_cached", "first_lot_params", "insert_key",
           "insert_ledger", "insert_values", "key_params", "lock_hold", "lock_spendable_lots",
           "owner_of", "spendable_summary", "take", "take_first", "take_first_keyed"]


# -- the gated fast path (async driver; see billable.ledger.fasthold) ----------------------------
#
# Two statements, each one whole transaction on an autocommit connection of the async pool
# (billable.ledger.apool). They keep the rows of the general path (holds.place / holds.commit)
# and cover only its common case; whatever they do not cover they leave untouched (or abort),
# and the caller runs the general path instead.

#: The marker of a fast hold that aborted itself (a deliberate cast error): the key row it
#: inserted must not outlive a hold it could not place, so the whole statement rolls back.
FAST_HOLD_ABORT = "billable-fast-hold-falls-back"
#: Set a session setting on a pool connection (the time zone and role Django's sessions get).
SET_SESSION = "SELECT set_config(%s, %s, false)"

#: A JSON column as a dict, however the driver returned it (text under Django's adapters).
json_object = _json


@dataclass(frozen=True)
class FastStatements:
    """The fast statements of one alias and consumption order, ready for the driver as sent
    (:func:`raw`: ``$n`` placeholders, no per-call parsing): the hold (its transaction commits
    without waiting for the disk, or ``hold_durable``: the session's ``synchronous_commit``),
    its settlement and its release (a handler that raised). Parameters: :data:`HOLD_SLOTS`,
    :data:`SETTLE_SLOTS` (release too), in that order."""

    hold: bytes
    hold_durable: bytes
    settle: bytes
    release: bytes


#: The parameters of the fast hold, in order (``$1`` …).
HOLD_SLOTS = ("user", "idem", "fingerprint", "now", "key", "amount", "rid", "action",
              "metadata", "expires")
#: The parameters of the fast settlement and release, in order.
SETTLE_SLOTS = ("rid", "now")

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")


def raw(text: str, names: Sequence[str] = ()) -> bytes:
    """``text`` as the driver sends it: each ``%(name)s`` → ``$i`` (``i``: the position of
    ``name`` in ``names``, so a value used twice is sent once), or each ``%s`` → the next
    ``$i``; ``%%`` → ``%``. The statement then runs on a raw cursor (``psycopg.AsyncRawCursor``)
    with its values as a sequence: psycopg neither parses nor reorders anything per call."""
    count = iter(range(1, 10_000))

    def number(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) is None:
            return f"${next(count)}"
        return f"${names.index(match.group(1)) + 1}"

    converted = _PLACEHOLDER.sub(number, text)
    if "%" in _PLACEHOLDER.sub("", text):  # pragma: no cover - a statement we wrote wrong
        raise RuntimeError(f"billable: unexpected placeholder in {text}")
    return converted.encode()


_SAFE_LITERAL = re.compile(r"[A-Za-z0-9_]*")


def _literal(value: Any) -> str:
    """A compiled constant of our own statements (a state value, a zero) as an SQL literal.
    Only ints (as the ORM compiled them: ``Int4(0)`` on psycopg 3) and identifier-like
    strings — never a per-call value."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    if type(value) is str and _SAFE_LITERAL.fullmatch(value):
        return f"'{value}'"
    raise RuntimeError(f"billable: {value!r} is not a literal constant")


def _named(compiled: Compiled, names: Sequence[str]) -> str:
    """``compiled`` with named placeholders (slot ``i`` → ``%(names[i])s``) and its constant
    parameters written in as literals (fewer values to send per call)."""
    slot_at = dict(compiled.positions)
    pieces = compiled.sql.split("%s")
    out = [pieces[0]]
    for index, piece in enumerate(pieces[1:]):
        if index in slot_at:
            out += [f"%({names[slot_at[index]]})s", piece]
        else:
            out += [_literal(compiled.template[index]), piece]
    return "".join(out)


def _hold_lot_sql(alias: str, order: str) -> Compiled:
    """Lock the first spendable batch in consumption order (only it, ``LIMIT 1``): the rows of
    ``_spendable`` (the product found by its unique key as a value, :func:`_product_id`, so the
    wallet index yields the batches in order instead of all of them being read and sorted)."""
    def build() -> Any:
        return (QuotaBatch.objects.using(alias).spendable(_sentinel(Slot.NOW))
                .filter(user_id=_sentinel(Slot.USER), product_id=_product_id(alias))
                .order_by(*_consumption_order(order))
                .select_for_update(of=("self",), no_key=True)
                .values_list("id", "remaining_quantity", "product_id",
                             "product__product_type")[:1].query)
    return _compile(alias, build, (Slot.USER, Slot.KEY, Slot.NOW),
                    ("id", "remaining_quantity", "product_id", "product_type"))


_FAST: dict[tuple[str, str], FastStatements] = {}


def fast_statements_cached(alias: str, order: str) -> FastStatements | None:
    """The compiled fast statements, or ``None`` before :func:`fast_statements` ran (no I/O)."""
    return _FAST.get((alias, order))


def fast_statements(alias: str, order: str) -> FastStatements:
    """Compile the fast hold and settle statements of ``alias`` once (sync: compiling a
    ``select_for_update`` query opens a transaction)."""
    found = _FAST.get((alias, order))
    if found is None:
        lot = _named(_hold_lot_sql(alias, order), ("user", "key", "now"))
        found = _FAST[(alias, order)] = FastStatements(
            hold=raw(_fast_hold_text(alias, lot, HOLD_COMMIT_MODE), HOLD_SLOTS),
            hold_durable=raw(_fast_hold_text(alias, lot, "NULL"), HOLD_SLOTS),
            settle=raw(_fast_settle_text(alias), SETTLE_SLOTS),
            release=raw(_fast_release_text(alias), SETTLE_SLOTS))
    return found


def _names(alias: str, model: type[models.Model], names: tuple[str, ...]) -> dict[str, str]:
    quote = connections[alias].ops.quote_name
    return {name: quote(str(f.column)) for name, f in zip(names, _fields(model, names),
                                                          strict=True)}


def _table(alias: str, model: type[models.Model]) -> str:
    return connections[alias].ops.quote_name(model._meta.db_table)


def _entitlement_types() -> str:
    return ", ".join(f"'{kind.value}'" for kind in sorted(ENTITLEMENTS))


def _fast_hold_text(alias: str, lot: str, commit_mode: str) -> str:
    """Key first (the global lock order: key, then batches), then the first batch in
    consumption order when it alone covers the amount, then the reservation and its item.

    A replayed key (the insert does nothing) touches nothing else: ``fresh`` is 0. A claimed
    key whose hold cannot be placed here (no batch, a batch too small: the general path
    decides between several batches, ``QuotaExhausted`` and ``InsufficientFunds``) aborts the
    statement with :data:`FAST_HOLD_ABORT`, so the key is rolled back with it.
    """
    key = _names(alias, IdempotencyKey, KEY_FIELDS)
    batch = _names(alias, QuotaBatch, ("id", "remaining_quantity", "state"))
    hold = _names(alias, Reservation, RESERVATION_NAMES)
    item = _names(alias, ReservationItem, ("reservation", "quota_batch", "amount"))
    keys, batches = _table(alias, IdempotencyKey), _table(alias, QuotaBatch)
    holds, items = _table(alias, Reservation), _table(alias, ReservationItem)
    kinds = _entitlement_types()
    return (
        f"WITH k AS (INSERT INTO {keys} ({', '.join(key.values())})"
        f" VALUES (%(user)s, %(idem)s, 'reserve', %(fingerprint)s,"
        f" jsonb_build_object('reservation_id', %(rid)s::text), %(now)s)"
        f" ON CONFLICT ({key['user']}, {key['key']}) DO NOTHING"
        f" RETURNING '{FAST_HOLD_ABORT}'::text AS abort),"
        f" lot AS (SELECT * FROM ({lot}) AS first_lot WHERE EXISTS (SELECT 1 FROM k)),"
        f" pick AS (SELECT lot.id, lot.product_id,"
        f" CASE WHEN lot.product_type IN ({kinds}) THEN 0 ELSE %(amount)s END AS take"
        f" FROM lot WHERE lot.product_type IN ({kinds})"
        f" OR lot.remaining_quantity >= %(amount)s),"
        f" took AS (UPDATE {batches} SET {batch['remaining_quantity']} ="
        f" {batches}.{batch['remaining_quantity']} - pick.take, {batch['state']} = CASE WHEN"
        f" {batches}.{batch['remaining_quantity']} = pick.take THEN '{EXHAUSTED.value}'"
        f" ELSE {batches}.{batch['state']} END FROM pick"
        f" WHERE {batches}.{batch['id']} = pick.id AND pick.take > 0 RETURNING 1),"
        f" r AS (INSERT INTO {holds} ({', '.join(hold.values())})"
        f" SELECT %(rid)s, %(user)s, pick.product_id, %(amount)s, 0, '{HELD.value}',"
        f" %(action)s, %(metadata)s, %(expires)s, %(now)s, NULL, %(idem)s FROM pick"
        f" RETURNING 1),"
        f" i AS (INSERT INTO {items} ({', '.join(item.values())})"
        f" SELECT %(rid)s, pick.id, pick.take FROM pick, r RETURNING 1)"
        f" SELECT (SELECT count(*) FROM k) AS fresh,"
        f" (SELECT CASE WHEN (SELECT count(*) FROM i) = 1 AND (SELECT count(*) FROM took)"
        f" = (SELECT count(*) FROM pick WHERE pick.take > 0) THEN 1"
        f" ELSE CAST(k.abort AS integer) END FROM k) AS placed,"
        f" {commit_mode} AS commit_mode"
    )


#: The hold's commit mode, evaluated inside the hold statement (so inside its transaction):
#: this transaction only (``is_local``) commits without waiting for its WAL to reach the disk
#: (``hold_durable`` has ``NULL`` there: the session's own setting). It is a column of the
#: result, not an unreferenced CTE (PostgreSQL would not evaluate that). Why it is safe:
#: docs/guarantees.md, "A hold commits without waiting for the disk".
HOLD_COMMIT_MODE = "set_config('synchronous_commit', 'off', true)"


RESERVATION_NAMES = ("id", "user", "product", "amount", "committed_amount", "state",
                     "action_type", "metadata", "expires_at", "created_at", "settled_at",
                     "idempotency_key")


def _fast_settle_text(alias: str) -> str:
    """``HELD`` → ``COMMITTED`` of a live one-item hold and its DEBIT row (id: the hold's); the
    row's user, batch, amount, action type and metadata (its other columns are the caller's
    values: the hold's id, ``DEBIT``, ``NULL``, ``now``) and the amount held. The metadata is
    ``holds._debit_metadata``'s: the hold's, its idempotency key (read from the row the
    ``UPDATE`` returns: no extra read) and its id (and ``requested_amount`` on entitlements).

    The hold's items are read once (``it``: the one-item check and the DEBIT's batch and
    amount). Matches nothing (no row returned, nothing written) for a hold that is not
    ``HELD``, is past its expiry or has several items: the general path settles those. The
    hold is found by its primary key: the state is compared as an expression
    (``state || ''``) so that the prepared statement's generic plan cannot pick the
    ``(state, expires_at)`` index instead (that plan reads every live hold of every user).
    """
    hold = _names(alias, Reservation, ("id", "user", "product", "amount", "committed_amount",
                                "state", "action_type", "metadata", "expires_at",
                                "settled_at", "idempotency_key"))
    item = _names(alias, ReservationItem, ("reservation", "quota_batch", "amount"))
    product = _names(alias, Product, ("id", "product_type"))
    ledger = _names(alias, Transaction, LEDGER_FIELDS)
    holds, items = _table(alias, Reservation), _table(alias, ReservationItem)
    products, rows = _table(alias, Product), _table(alias, Transaction)
    kinds = _entitlement_types()
    debit = Transaction.Direction.DEBIT.value
    keys = "'idempotency_key', r.idempotency_key, 'reservation_id', r.id::text"
    meta = (f"r.metadata || CASE WHEN p.{product['product_type']} IN ({kinds})"
            f" THEN jsonb_build_object({keys}, 'requested_amount', r.amount)"
            f" ELSE jsonb_build_object({keys}) END")
    return (
        f"WITH it AS (SELECT {items}.{item['quota_batch']} AS batch_id,"
        f" {items}.{item['amount']} AS amount FROM {items}"
        f" WHERE {items}.{item['reservation']} = %(rid)s),"
        f" r AS (UPDATE {holds} SET {hold['state']} = '{COMMITTED.value}',"
        f" {hold['committed_amount']} = {holds}.{hold['amount']},"
        f" {hold['settled_at']} = %(now)s"
        f" WHERE {holds}.{hold['id']} = %(rid)s"
        f" AND ({holds}.{hold['state']} || '') = '{HELD.value}'"
        f" AND {holds}.{hold['expires_at']} > %(now)s"
        f" AND (SELECT count(*) FROM it) = 1"
        f" RETURNING {holds}.{hold['id']} AS id, {holds}.{hold['user']} AS user_id,"
        f" {holds}.{hold['product']} AS product_id, {holds}.{hold['amount']} AS amount,"
        f" {holds}.{hold['action_type']} AS action_type, {holds}.{hold['metadata']} AS metadata,"
        f" {holds}.{hold['idempotency_key']} AS idempotency_key),"
        f" d AS (INSERT INTO {rows} ({', '.join(ledger.values())})"
        f" SELECT r.id, r.user_id, it.batch_id, it.amount, '{debit}',"
        f" r.action_type, NULL, NULL, {meta}, %(now)s"
        f" FROM r CROSS JOIN it JOIN {products} AS p ON p.{product['id']} = r.product_id"
        f" RETURNING {ledger['user']}, {ledger['quota_batch']}, {ledger['amount']},"
        f" {ledger['action_type']}, {ledger['metadata']})"
        f" SELECT d.*, r.amount FROM d, r"
    )


def _fast_release_text(alias: str) -> str:
    """``HELD`` → ``RELEASED`` of a one-item hold and its units back to their batch: what
    ``holds.release`` writes for it (no ledger row), in one statement.

    Matches nothing (``released`` is NULL, nothing written) for a hold that is not ``HELD`` or
    has several items: the general path answers for those. Its items are read once (``h``).
    The hold row is locked first, then its batch (the release order of the general path). A
    batch that is no longer ``ACTIVE`` or ``EXHAUSTED`` (expired or revoked while the hold was
    open: the general path writes its units off with a DEBIT) aborts the statement with
    :data:`FAST_HOLD_ABORT`, so the hold's update is rolled back with it.
    """
    hold = _names(alias, Reservation, ("id", "committed_amount", "state", "settled_at"))
    item = _names(alias, ReservationItem, ("reservation", "quota_batch", "amount"))
    batch = _names(alias, QuotaBatch, ("id", "remaining_quantity", "state"))
    holds, items, batches = (_table(alias, Reservation), _table(alias, ReservationItem),
                             _table(alias, QuotaBatch))
    released = Reservation.State.RELEASED.value
    return (
        f"WITH h AS (SELECT {items}.{item['quota_batch']} AS batch_id,"
        f" {items}.{item['amount']} AS amount FROM {items}"
        f" WHERE {items}.{item['reservation']} = %(rid)s),"
        f" r AS (UPDATE {holds} SET {hold['state']} = '{released}',"
        f" {hold['committed_amount']} = 0, {hold['settled_at']} = %(now)s"
        f" WHERE {holds}.{hold['id']} = %(rid)s"
        f" AND ({holds}.{hold['state']} || '') = '{HELD.value}'"
        f" AND (SELECT count(*) FROM h) = 1"
        f" RETURNING '{FAST_HOLD_ABORT}'::text AS abort),"
        f" it AS (SELECT h.batch_id, h.amount FROM h, r WHERE h.amount > 0),"
        f" b AS (UPDATE {batches} SET {batch['remaining_quantity']} ="
        f" {batches}.{batch['remaining_quantity']} + it.amount, {batch['state']} ="
        f" '{ACTIVE.value}' FROM it WHERE {batches}.{batch['id']} = it.batch_id"
        f" AND {batches}.{batch['state']} IN ('{ACTIVE.value}', '{EXHAUSTED.value}')"
        f" RETURNING 1)"
        f" SELECT (SELECT CASE WHEN (SELECT count(*) FROM b) = (SELECT count(*) FROM it)"
        f" THEN 1 ELSE CAST(r.abort AS integer) END FROM r) AS released"
    )


__all__ += ["FAST_HOLD_ABORT", "HOLD_COMMIT_MODE", "HOLD_SLOTS", "SETTLE_SLOTS", "SET_SESSION",
            "FastStatements", "fast_statements", "fast_statements_cached", "json_object", "raw"]


# =================================================================================================
# Identity change notices (issue 14, identity without a round trip): LISTEN/NOTIFY on PostgreSQL
# =================================================================================================
#
# A transaction that moves or deletes an external identity (a customer merge, a model save, a
# queryset update, raw SQL from any client) queues one notice per row on :data:`IDENTITY_CHANNEL`
# from the triggers of migration ``0012_identity_change_trigger``; PostgreSQL delivers it only
# when that transaction commits (never for a rollback). Bot processes LISTEN on a dedicated
# connection, check that the triggers are there (:data:`IDENTITY_TRIGGERS_ON`) and evict the
# cached identities each notice names. Other backends send nothing.

#: The channel of identity change notices.
IDENTITY_CHANNEL = "billable_identity"
#: PostgreSQL refuses a notice payload of 8,000 bytes or more; a longer notice says "everything".
_NOTICE_LIMIT = 7_900


def notify_identity_change(*, user_ids: Sequence[Any] = (),
                           identities: Sequence[tuple[str, str]] = (),
                           using: str = DEFAULT_DB_ALIAS) -> bool:
    """Queue a notice naming the accounts and ``(provider, external_id)`` pairs whose identity
    mapping changes in the current transaction; ``False`` when the backend has no notices.

    Identity rows need no call: their triggers send the notice for every write (the payload
    built here is the one they build). This is for a change the triggers cannot see.

    Delivered to listeners on commit only. A payload too long for PostgreSQL becomes
    ``{"all": true}`` (listeners drop every cached identity).
    """
    conn = connections[using]
    if conn.vendor != "postgresql":
        return False
    payload = json.dumps({"users": [str(u) for u in user_ids if u is not None],
                          "identities": [[str(p), str(e)] for p, e in identities]},
                         separators=(",", ":"))
    if len(payload.encode("utf-8")) > _NOTICE_LIMIT:
        payload = '{"all":true}'
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [IDENTITY_CHANNEL, payload])
    return True


@dataclass(frozen=True)
class IdentityNotice:
    """A decoded identity change notice: everything (``everything``) or the named accounts and
    ``(provider, external_id)`` pairs."""

    user_ids: tuple[str, ...] = ()
    identities: tuple[tuple[str, str], ...] = ()
    everything: bool = False


def decode_identity_notice(*, payload: str) -> IdentityNotice:
    """The notice a payload of :func:`notify_identity_change` carries (unreadable: everything)."""
    try:
        data = json.loads(payload)
        if data.get("all"):
            return IdentityNotice(everything=True)
        return IdentityNotice(
            user_ids=tuple(str(u) for u in data.get("users", ())),
            identities=tuple((str(p), str(e)) for p, e in data.get("identities", ())))
    except (ValueError, TypeError, AttributeError):
        return IdentityNotice(everything=True)


def notices_supported(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``using`` can deliver identity change notices (PostgreSQL)."""
    return bool(connections[using].vendor == "postgresql")


#: Subscribe a connection to identity change notices (:func:`billable.ledger.apool.alisten`).
LISTEN_IDENTITY = f"LISTEN {IDENTITY_CHANNEL}"

#: The triggers that send identity change notices (migration ``0012_identity_change_trigger``).
IDENTITY_TRIGGERS = ("billable_identity_notice_update", "billable_identity_notice_delete",
                     "billable_identity_notice_truncate")

#: One row, one column: whether every trigger of :data:`IDENTITY_TRIGGERS` exists on the identity
#: table and fires in ordinary sessions (``O``rigin or ``A``lways; not disabled, not replica-only).
IDENTITY_TRIGGERS_ON = (
    "SELECT count(*) = {count} FROM pg_trigger WHERE tgrelid = to_regclass('{table}') "
    "AND tgenabled IN ('O', 'A') AND tgname IN ({names})"
).format(count=len(IDENTITY_TRIGGERS), table=ExternalIdentity._meta.db_table,
         names=", ".join(f"'{name}'" for name in IDENTITY_TRIGGERS))


__all__ += ["IDENTITY_CHANNEL", "IDENTITY_TRIGGERS", "IDENTITY_TRIGGERS_ON", "LISTEN_IDENTITY",
            "IdentityNotice", "decode_identity_notice", "notices_supported",
            "notify_identity_change"]
