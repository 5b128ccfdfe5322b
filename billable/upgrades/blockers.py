"""Rows a 0.2 database may hold that 0.3's constraints refuse.

0.2 accepted them (SPEC §9 lists the defects: one payment id paying several orders, zero or
negative quantities, …); 0.3 enforces each rule with a CHECK or UNIQUE constraint. None of them
can be carried over without a decision about money or history, so the upgrade stops and names
the rows instead of guessing. Each query is plain SQL that SQLite and PostgreSQL both run.
"""

from __future__ import annotations

from typing import Any, NamedTuple

SHOWN = 5


class Rule(NamedTuple):
    table: str
    what: str
    sql: str


def _where(table: str, condition: str) -> str:
    return f"SELECT id FROM {table} WHERE {condition} ORDER BY id"


def _shared(table: str, columns: str, condition: str = "") -> str:
    """Rows whose ``columns`` (a comma-separated list) equal another row's."""
    same = " AND ".join(f"o.{c.strip()} = r.{c.strip()}" for c in columns.split(","))
    extra = f"{condition} AND " if condition else ""
    return (f"SELECT r.id FROM {table} r WHERE {extra}EXISTS (SELECT 1 FROM {table} o "
            f"WHERE {same} AND o.id <> r.id) ORDER BY r.id")


RULES = [
    Rule("billable_orders", "share one payment id (and method) with another order",
         _shared("billable_orders", "payment_method, payment_id",
                 "r.payment_id IS NOT NULL AND r.payment_id <> ''")),
    Rule("billable_orders", "have a negative total", _where("billable_orders", "total_amount < 0")),
    Rule("billable_order_items", "have a quantity of 0 or less",
         _where("billable_order_items", "quantity <= 0")),
    Rule("billable_order_items", "have a negative price",
         _where("billable_order_items", "price < 0")),
    Rule("billable_order_items", "have no offer",
         _where("billable_order_items", "offer_id IS NULL")),
    Rule("billable_offers", "have a negative price", _where("billable_offers", "price < 0")),
    Rule("billable_offers", "have a blank SKU", _where("billable_offers", "TRIM(sku) = ''")),
    Rule("billable_offers", "have a SKU that differs from another only in letter case",
         "SELECT r.id FROM billable_offers r WHERE EXISTS (SELECT 1 FROM billable_offers o "
         "WHERE UPPER(o.sku) = UPPER(r.sku) AND o.id <> r.id) ORDER BY r.id"),
    Rule("billable_products", "have a key that differs from another only in letter case",
         "SELECT r.id FROM billable_products r WHERE r.product_key <> '' AND EXISTS (SELECT 1 "
         "FROM billable_products o WHERE UPPER(o.product_key) = UPPER(r.product_key) "
         "AND o.id <> r.id) ORDER BY r.id"),
    Rule("billable_offer_items", "have a quantity of 0",
         _where("billable_offer_items", "quantity <= 0")),
    Rule("billable_offer_items", "have a period value of 0",
         _where("billable_offer_items", "period_value IS NOT NULL AND period_value <= 0")),
    Rule("billable_quota_batches", "have quantities outside 0 <= remaining <= initial",
         _where("billable_quota_batches",
                "initial_quantity < 0 OR remaining_quantity < 0 "
                "OR remaining_quantity > initial_quantity")),
    Rule("billable_quota_batches", "have an unknown state",
         _where("billable_quota_batches",
                "state NOT IN ('ACTIVE', 'EXHAUSTED', 'EXPIRED', 'REVOKED')")),
    Rule("billable_transactions", "have a negative amount",
         _where("billable_transactions", "amount < 0")),
    Rule("billable_transactions", "have a direction other than CREDIT or DEBIT",
         _where("billable_transactions", "direction NOT IN ('CREDIT', 'DEBIT')")),
    Rule("billable_referrals", "refer a user to themselves",
         _where("billable_referrals", "referrer_id = referee_id")),
    Rule("billable_referrals", "give one referee several referrers",
         _shared("billable_referrals", "referee_id")),
]


def find_problems(cursor: Any) -> list[str]:
    """One line per rule that some rows break: how many, which table, the first ids."""
    problems = []
    for rule in RULES:
        cursor.execute(rule.sql)
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            shown = ", ".join(str(i) for i in ids[:SHOWN]) + (", …" if len(ids) > SHOWN else "")
            problems.append(f"{len(ids)} row(s) of {rule.table} {rule.what} (id {shown})")
    return problems


__all__ = ["RULES", "Rule", "find_problems"]
