"""The forward step of migration ``0003_upgrade_from_0_2``.

Order of work, all inside the migration's transaction (SQLite and PostgreSQL both roll DDL
back, so a failure anywhere leaves the 0.2 tables as they were):

1. classify the schema from its tables; a 0.3 database (fresh or existing) is left alone;
2. refuse schemas this step cannot upgrade (0.1, unknown) and 0.2 rows 0.3 cannot hold;
3. normalise the few values 0.3 spells differently, reshape every table, create the new ones;
4. move 0.2's idempotency keys into the key table and forget 0.2's second migration.
"""

from __future__ import annotations

import sys
from typing import Any

from django.db.migrations.recorder import MigrationRecorder

from billable.upgrades import blockers, keys, schema
from billable.upgrades.detect import PRE_0_2_TABLES, Schema, detect, missing_tables
from billable.upgrades.errors import LegacyUpgradeError

#: The second migration of the published 0.2 package (0.3 has no file of that name).
MIGRATION_0_2 = "0002_externalidentity"


def upgrade_from_0_2(apps: Any, schema_editor: Any) -> None:
    """Upgrade a 0.2 schema in place; do nothing on a database 0.3's migrations built."""
    connection = schema_editor.connection
    found = detect(connection)
    if found is Schema.CURRENT:
        return
    if found is Schema.OLDER:
        raise LegacyUpgradeError(
            "billable: this database holds tables of billable 0.1 "
            f"({', '.join(sorted(PRE_0_2_TABLES))}); 0.3 upgrades 0.2 databases only.",
            ["install billable==0.2.0, run `manage.py migrate billable`, then install 0.3 again"],
            section="Databases older than 0.2")
    if found is Schema.UNKNOWN:
        missing = missing_tables(connection)
        raise LegacyUpgradeError(
            "billable: migration billable.0001_initial is recorded as applied, but the billable "
            "tables are neither 0.3's nor 0.2's.",
            [f"missing tables: {', '.join(missing)}" if missing else
             "billable_trial_history has no created_at column, so this is not 0.2's schema"],
            section="Databases older than 0.2")
    with connection.cursor() as cursor:
        problems = blockers.find_problems(cursor)
    if problems:
        raise LegacyUpgradeError(
            "billable: this database was created by billable 0.2 and holds rows that 0.3 "
            "refuses. Nothing in the billable tables was changed.",
            problems, section="When migrate stops")
    schema.normalize_values(schema_editor)
    schema.reshape(apps, schema_editor)
    imported = keys.import_keys(apps)
    MigrationRecorder(connection).migration_qs.filter(app="billable",
                                                     name=MIGRATION_0_2).delete()
    sys.stdout.write(f"\n  Upgraded the billable 0.2 schema in place ({imported} idempotency "
                     "key(s) carried over). Run `manage.py billable_check_ledger` next.")


__all__ = ["MIGRATION_0_2", "upgrade_from_0_2"]
