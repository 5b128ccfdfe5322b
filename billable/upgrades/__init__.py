"""In-place upgrades of databases created by earlier billable releases.

The published 0.2 package and this release both name their first migration
``billable.0001_initial``, so on a 0.2 database Django considers 0.3's first migration applied.
Migration ``0003_upgrade_from_0_2`` therefore looks at the tables themselves: on a database
that 0.3's own migrations built it does nothing; on a 0.2 schema it checks the data, reshapes
the tables in place (every row kept) and records what 0.2 stored in its own way; anything it
cannot carry over stops ``migrate`` with :class:`LegacyUpgradeError`. See docs/upgrading.md.
"""

from billable.upgrades.errors import LegacyUpgradeError
from billable.upgrades.from_0_2 import upgrade_from_0_2

__all__ = ["LegacyUpgradeError", "upgrade_from_0_2"]
