"""Which billable schema a database holds, read from its tables (never from django_migrations).

Both 0.2 and 0.3 record ``billable.0001_initial``, so the migration history cannot tell them
apart; the tables can. 0.3's first migration creates ``billable_idempotency_keys``; 0.2 never
had it, and 0.2's trial history keeps a ``created_at`` column that 0.3 does not have.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

#: Tables of the 0.1 schema, which 0.2's own second migration folds into batches and ledger.
PRE_0_2_TABLES = frozenset({"billable_user_products", "billable_product_usages"})
#: The tables 0.2 ships; an upgrade needs every one of them.
TABLES_0_2 = frozenset({
    "billable_products", "billable_offers", "billable_offer_items", "billable_orders",
    "billable_order_items", "billable_quota_batches", "billable_transactions",
    "billable_trial_history", "billable_external_identities", "billable_referrals",
})


class Schema(Enum):
    CURRENT = "built by this release's migrations"
    V0_2 = "created by billable 0.2"
    OLDER = "created by a billable release older than 0.2"
    UNKNOWN = "not recognised"


def detect(connection: Any) -> Schema:
    """Classify the billable tables of ``connection``'s database."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        if "billable_idempotency_keys" in tables:
            return Schema.CURRENT
        if tables & PRE_0_2_TABLES:
            return Schema.OLDER
        if not TABLES_0_2 <= tables:
            return Schema.UNKNOWN
        trial_columns = {
            column.name
            for column in connection.introspection.get_table_description(
                cursor, "billable_trial_history")
        }
    return Schema.V0_2 if "created_at" in trial_columns else Schema.UNKNOWN


def missing_tables(connection: Any) -> list[str]:
    """The 0.2 tables this database lacks (for the error message of an unknown schema)."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    return sorted(TABLES_0_2 - tables)


__all__ = ["PRE_0_2_TABLES", "TABLES_0_2", "Schema", "detect", "missing_tables"]
