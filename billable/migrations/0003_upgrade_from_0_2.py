"""Upgrade a database created by the published billable 0.2 in place.

0.2's first migration is also called ``0001_initial``, so on a 0.2 database Django treats this
release's ``0001`` as applied. This migration reads the tables: on a database built by this
release's migrations (a fresh install or an existing 0.3 one) it changes nothing; on a 0.2
schema it reshapes the tables in place keeping every row, or stops ``migrate`` with a clear
error (see docs/upgrading.md). It has no schema operations of its own, so the migration state is
unchanged; every later billable migration must depend on it.
"""

from django.db import migrations

from billable.upgrades import upgrade_from_0_2


class Migration(migrations.Migration):

    dependencies = [
        ("billable", "0002_customer_merges"),
    ]

    operations = [
        migrations.RunPython(upgrade_from_0_2, migrations.RunPython.noop, elidable=False),
    ]
