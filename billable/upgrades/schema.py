"""Reshape 0.2's billable tables into 0.3's, in place, keeping every row.

The target is the migration state itself: each table ends up as 0.3's migrations would have
created it (same columns, types, nullability, constraint and index names), so later migrations
apply as on any 0.3 database. Table names and primary keys never change, so foreign keys from
other apps' tables keep pointing at the same rows.

* SQLite cannot alter columns; Django rebuilds each table from the model (the same
  copy-and-rename every ``AlterField`` does on SQLite), which drops 0.2's extra column and
  indexes on the way.
* PostgreSQL alters in place: column types widen, the positive-integer and Meta CHECK/UNIQUE
  constraints are added (validating every row), 0.2's own indexes are dropped and the
  auto-named ones renamed to the names a fresh install gets.
"""

from __future__ import annotations

from typing import Any

#: Models whose tables 0.2 already has (the others are created empty).
RESHAPED = ["Product", "Offer", "OfferItem", "Order", "OrderItem", "QuotaBatch", "Transaction",
            "TrialHistory", "ExternalIdentity", "Referral"]
CREATED = ["Reservation", "ReservationItem", "IdempotencyKey"]

#: Indexes 0.2 declared by name in its models' Meta; 0.3 has none of them.
INDEXES_0_2 = [
    "billable_prod_is_active_idx", "billable_prod_type_idx", "billable_ord_user_status_idx",
    "billable_ord_status_idx", "billable_ord_created_at_idx", "billable_ord_item_order_idx",
    "billable_qb_user_prod_state", "billable_qb_expires_at_idx", "billable_tx_user_created_idx",
    "billable_tx_action_type_idx", "billable_trial_identity_idx", "billable_ref_referrer_idx",
    "billable_ref_referee_idx", "billable_ref_bonus_granted_idx", "billable_ref_created_at_idx",
    "billable_extid_provider_idx", "billable_extid_external_id_idx", "billable_extid_user_idx",
]
#: Columns 0.2 marked ``db_index=True`` (0.3 indexes them through Meta or not at all).
DB_INDEXED_0_2 = [("billable_trial_history", "identity_type"),
                  ("billable_trial_history", "identity_hash"),
                  ("billable_external_identities", "provider"),
                  ("billable_external_identities", "external_id")]
#: Columns 0.3 declares wider than 0.2 did (or narrower, where every 0.2 value fits).
RETYPED = {"Offer": ["currency", "image"], "Order": ["total_amount", "currency", "payment_method"],
           "OrderItem": ["price"], "QuotaBatch": ["state"], "Transaction": ["direction"]}

NORMALIZE = [
    # 0.3 forbids a blank product key (NULL means "no key") and stores keys and SKUs upper-case.
    "UPDATE billable_products SET product_key = NULL WHERE TRIM(product_key) = ''",
    "UPDATE billable_products SET product_key = UPPER(product_key) "
    "WHERE product_key <> UPPER(product_key)",
    "UPDATE billable_offers SET sku = UPPER(sku) WHERE sku <> UPPER(sku)",
    # An empty image or payment id means "none", which 0.3 stores as NULL.
    "UPDATE billable_offers SET image = NULL WHERE image = ''",
    "UPDATE billable_orders SET payment_id = NULL WHERE payment_id = ''",
]


def normalize_values(schema_editor: Any) -> None:
    """Rewrite the few 0.2 values 0.3 spells differently (same meaning, no row removed)."""
    for statement in NORMALIZE:
        schema_editor.execute(statement)


def reshape(apps: Any, schema_editor: Any) -> None:
    """Bring every 0.2 table to its 0.3 shape and create the tables 0.2 did not have."""
    models = [apps.get_model("billable", name) for name in RESHAPED]
    if schema_editor.connection.vendor == "sqlite":
        for model in models:
            schema_editor._remake_table(model)
    else:
        _alter_in_place(schema_editor, models)
    for name in CREATED:
        schema_editor.create_model(apps.get_model("billable", name))


def _alter_in_place(editor: Any, models: list[Any]) -> None:
    editor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events before ALTER
    editor.execute("SET CONSTRAINTS ALL DEFERRED")
    for name in INDEXES_0_2:
        editor.execute(f"DROP INDEX IF EXISTS {editor.quote_name(name)}")
    for table, column in DB_INDEXED_0_2:
        plain = editor._create_index_name(table, [column])
        for index in (plain, editor._create_index_name(table, [column], suffix="_like")):
            editor.execute(f"DROP INDEX IF EXISTS {editor.quote_name(index)}")
    for model in models:
        _alter_columns(editor, model)
        _align_constraints(editor, model)


def _alter_columns(editor: Any, model: Any) -> None:
    table, quote = model._meta.db_table, editor.quote_name
    connection = editor.connection
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, table)
    existing = {column.name: column for column in description}
    wanted = {field.column: field for field in model._meta.local_concrete_fields}
    for column in sorted(set(existing) - set(wanted)):
        editor.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(column)}")
    for name in RETYPED.get(model.__name__, []):
        field = model._meta.get_field(name)
        editor.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(field.column)} "
                       f"TYPE {field.db_type(connection)}")
    for column, field in wanted.items():
        if not field.null and existing[column].null_ok:
            editor.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} SET NOT NULL")


def _align_constraints(editor: Any, model: Any) -> None:
    """Give ``model``'s table exactly the constraints and indexes a fresh install has."""
    table, quote = model._meta.db_table, editor.quote_name
    present = _constraints(editor, table)
    for field in model._meta.local_concrete_fields:
        check = field.db_parameters(connection=editor.connection)["check"]
        name = f"{table}_{field.column}_check"
        if check and name not in present:
            editor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} "
                           f"CHECK ({check})")
        if field.unique and not field.primary_key:
            _rename_field_unique(editor, table, field.column, present)
    declared = {c.name for c in model._meta.constraints} | {i.name for i in model._meta.indexes}
    declared_unique = {tuple(model._meta.get_field(f).column for f in c.fields): c.name
                       for c in model._meta.constraints if getattr(c, "fields", None)}
    for name, info in present.items():
        columns = tuple(info["columns"])
        replaced = declared_unique.get(columns)
        if info["unique"] and not info["primary_key"] and replaced and name != replaced:
            editor.execute(_drop_sql(editor, table, name, info))
    present = _constraints(editor, table)
    for index in model._meta.indexes:
        if index.name not in present:
            editor.add_index(model, index)
    for constraint in model._meta.constraints:
        if constraint.name not in present:
            editor.add_constraint(model, constraint)
    assert declared <= set(_constraints(editor, table))


def _rename_field_unique(editor: Any, table: str, column: str, present: dict[str, Any]) -> None:
    """0.2 renamed ``sku`` to ``product_key``: give its UNIQUE and LIKE index today's names."""
    quote = editor.quote_name
    unique_name, like_name = f"{table}_{column}_key", editor._create_index_name(
        table, [column], suffix="_like")
    for name, info in present.items():
        if info["columns"] != [column] or info["primary_key"] or info["foreign_key"]:
            continue
        if info["unique"] and not info["index"] and name != unique_name:
            editor.execute(f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(name)} "
                           f"TO {quote(unique_name)}")
        elif info["index"] and name.endswith("_like") and name != like_name:
            editor.execute(f"ALTER INDEX {quote(name)} RENAME TO {quote(like_name)}")


def _constraints(editor: Any, table: str) -> dict[str, Any]:
    connection = editor.connection
    with connection.cursor() as cursor:
        found: dict[str, Any] = connection.introspection.get_constraints(cursor, table)
    return found


def _drop_sql(editor: Any, table: str, name: str, info: dict[str, Any]) -> str:
    if info["index"]:
        return f"DROP INDEX {editor.quote_name(name)}"
    return f"ALTER TABLE {editor.quote_name(table)} DROP CONSTRAINT {editor.quote_name(name)}"


__all__ = ["CREATED", "RESHAPED", "normalize_values", "reshape"]
