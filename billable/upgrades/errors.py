"""The one error an in-place upgrade raises, and the documentation it points to."""

from __future__ import annotations

import re

from django.core.management.base import CommandError

GUIDE = "docs/upgrading.md"
GUIDE_URL = "https://github.com/bubinez/billable/blob/main/docs/upgrading.md"


class LegacyUpgradeError(CommandError):
    """``migrate`` met a billable database it cannot upgrade in place as it is.

    A ``CommandError``, so ``manage.py migrate`` prints the message (no traceback) and exits
    with status 1. The migration's transaction is rolled back: the 0.2 tables are unchanged.
    ``code`` is stable; ``problems`` lists one line per kind of offending row.
    """

    code = "legacy_upgrade_blocked"

    def __init__(self, summary: str, problems: list[str], *, section: str) -> None:
        self.summary = summary
        self.problems = problems
        self.section = section
        lines = [summary, *(f"  - {problem}" for problem in problems)]
        anchor = re.sub(r"[^a-z0-9 -]", "", section.lower()).replace(" ", "-")
        lines.append(f'See {GUIDE}, section "{section}" ({GUIDE_URL}#{anchor}), '
                     "then run migrate again.")
        super().__init__("\n".join(lines))


__all__ = ["GUIDE", "GUIDE_URL", "LegacyUpgradeError"]
