"""What "reads the same" means for an upgraded 0.2 database: the rows both versions store.

Imported by the 0.2 builder (running on the published 0.2 package) and by the 0.3 reader, so
the two sides dump exactly the same columns of the same tables in the same order.
"""

from __future__ import annotations

import json
from typing import Any

#: model name -> the fields both 0.2 and 0.3 store (foreign keys by their ``_id`` column).
TABLES: dict[str, list[str]] = {
    "Product": ["id", "product_key", "name", "description", "product_type", "is_active",
                "is_currency", "created_at", "metadata"],
    "Offer": ["id", "sku", "name", "price", "currency", "description", "is_active",
              "created_at", "metadata"],
    "OfferItem": ["id", "offer_id", "product_id", "quantity", "period_unit", "period_value"],
    "Order": ["id", "user_id", "total_amount", "currency", "status", "payment_method",
              "payment_id", "metadata", "created_at", "paid_at"],
    "OrderItem": ["id", "order_id", "offer_id", "quantity", "price"],
    "QuotaBatch": ["id", "user_id", "product_id", "source_offer_id", "order_item_id",
                   "initial_quantity", "remaining_quantity", "valid_from", "expires_at", "state",
                   "created_at"],
    "Transaction": ["id", "user_id", "quota_batch_id", "amount", "direction", "action_type",
                    "content_type_id", "object_id", "created_at", "metadata"],
    "TrialHistory": ["id", "identity_type", "identity_hash", "trial_plan_name", "used_at"],
    "ExternalIdentity": ["id", "provider", "external_id", "user_id", "metadata", "created_at",
                         "updated_at"],
    "Referral": ["id", "referrer_id", "referee_id", "bonus_granted", "bonus_granted_at",
                 "metadata", "created_at"],
}


def plain(value: Any) -> Any:
    """A JSON-comparable form of ``value`` (decimals, datetimes and UUIDs as strings)."""
    return json.loads(json.dumps(value, default=str))


def dump_rows(models: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table in :data:`TABLES`, ordered by primary key."""
    return {
        name: plain(list(getattr(models, name).objects.order_by("pk").values(*fields)))
        for name, fields in TABLES.items()
    }


def schema_of(connection: Any) -> dict[str, Any]:
    """Columns and constraints (with their names) of every billable and bot_kit table."""
    tables: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            if not table.startswith(("billable_", "bot_kit_")):
                continue
            description = connection.introspection.get_table_description(cursor, table)
            tables[table] = {
                "columns": {column.name: column._asdict() for column in description},
                "constraints": connection.introspection.get_constraints(cursor, table),
            }
    return plain(tables)
