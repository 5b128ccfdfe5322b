"""Another process that changes identities (run by ``test_identity_notices``).

``python -m tests.bot_kit.identity_process merge <target> <source> [rollback]`` merges two
customers in its own transaction (``rollback``: then raises, so the merge is rolled back);
``... notice <text>`` commits a bare identity change notice naming the account ``<text>``.
"""

from __future__ import annotations

import sys

import django


class Rollback(Exception):
    pass


def main(argv: list[str]) -> int:
    django.setup()
    from django.db import transaction

    from billable.ledger import sql
    from billable.services import CustomerService

    if argv[0] == "merge":
        target, source = int(argv[1]), int(argv[2])
        if argv[3:] == ["rollback"]:
            try:
                with transaction.atomic():
                    CustomerService.merge_customers(target, source)
                    raise Rollback
            except Rollback:
                return 0
        CustomerService.merge_customers(target, source)
        return 0
    if argv[0] == "notice":
        with transaction.atomic():
            sql.notify_identity_change(user_ids=(argv[1],))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
