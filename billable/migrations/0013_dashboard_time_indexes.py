"""Indexes for the revenue dashboard's time ranges (``billable.selectors.dashboard``).

The dashboard reads the orders *paid* in a range and the ledger rows *created* in a range. Without
an index on either column alone, each chart scanned the whole ``billable_orders`` or
``billable_transactions`` table — a cost that grew with the install, not with the range:

* ``billable_order_paid_idx`` — a B-tree on ``Order.paid_at`` (both backends; orders are written
  rarely, so the extra index entry per payment is cheap);
* ``billable_txn_created_brin`` — on PostgreSQL only, a BRIN index on
  ``Transaction.created_at``. The ledger is append-only and written in time order, so a BRIN
  index (one summary per block range, a few pages for millions of rows) finds a day's rows
  without adding a B-tree insertion to every DEBIT and CREDIT on the hot path. SQLite (the demo
  and tests) gets none: its ledgers are small.

Both are built with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL (hence ``atomic = False``): on a
large install the build does not block payments or consumption while it runs. The order index
is in the model's ``Meta``; the BRIN index is a database object only (like the triggers of
migration 0012).
"""

from django.db import migrations, models

ORDER_INDEX = "billable_order_paid_idx"
LEDGER_INDEX = "billable_txn_created_brin"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{ORDER_INDEX}" '
            'ON "billable_orders" ("paid_at")')
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{LEDGER_INDEX}" '
            'ON "billable_transactions" USING brin ("created_at")')
    else:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{ORDER_INDEX}" ON "billable_orders" ("paid_at")')


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{ORDER_INDEX}"')
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{LEDGER_INDEX}"')


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('billable', '0012_identity_change_trigger'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name='order',
                    index=models.Index(fields=['paid_at'], name=ORDER_INDEX),
                ),
            ],
            database_operations=[
                migrations.RunPython(create, drop, elidable=False),
            ],
        ),
    ]
