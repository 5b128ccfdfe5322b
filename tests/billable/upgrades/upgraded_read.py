"""Read an upgraded 0.2 database with 0.3, then write to it; print what happened as JSON.

    DJANGO_SETTINGS_MODULE=tests.settings DATABASE_URL=<url> \\
        python upgraded_read.py <snapshot.json> <result.json> rows|full

``rows`` dumps the rows only (it also works on a 0.2 schema that is not upgraded yet). ``full``
runs after ``manage.py migrate`` upgraded the database that ``legacy_build.py`` made: it reads
what the 0.2 snapshot holds (every row, balances, serialized orders, the REST wallet) and the
schema, then writes: a replay of a 0.2 idempotent consumption, a grant, a consumption, a paid
order, an exchange, a hold, and the ledger check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def reads(snapshot: dict[str, Any]) -> dict[str, Any]:
    from django.test import Client
    from rows import dump_rows, plain

    import billable.models as models
    from billable.models import Order
    from billable.services import OrderService, TransactionService

    users, keys = snapshot["users"], sorted(snapshot["balances"]["alice"])
    client = Client(headers={"Authorization": "Bearer test-token-0123456789abcdef"})
    return {
        "rows": dump_rows(models),
        "balances": {name: {key: TransactionService.get_balance(pk, key) for key in keys}
                     for name, pk in users.items()},
        "orders": plain([OrderService.serialize_order_to_dict(order)
                         for order in Order.objects.order_by("pk")]),
        "rest_wallets": {name: client.get("/api/v1/billing/wallet", {"user_id": pk}).json()
                         for name, pk in users.items()},
    }


def writes(snapshot: dict[str, Any]) -> dict[str, Any]:
    from billable.ledger.audit import check_ledger
    from billable.models import Order
    from billable.services import OrderService, TransactionService

    users, replay = snapshot["users"], snapshot["idempotent"]
    alice, bob, dave = users["alice"], users["bob"], users["dave"]
    replayed = TransactionService.consume_quota(
        users[replay["username"]], replay["product_key"], amount=replay["amount"],
        action_id=replay["action_id"], idempotency_key=replay["key"])
    granted = TransactionService.grant_offer(alice, "credits_10", source="manual_grant")
    consumed = TransactionService.consume_quota(alice, "credits", amount=4,
                                                idempotency_key="after-upgrade-1")
    order = OrderService.create_order(bob, [{"sku": "CREDITS_10", "quantity": 1}])
    OrderService.process_payment(order.pk, payment_id="pay_after_upgrade",
                                 payment_method="stripe")
    exchanged = TransactionService.exchange(users["carol"], offer="CREDITS_FOR_COINS")
    hold = TransactionService.reserve_quota(dave, "COINS", amount=5)
    TransactionService.commit_reservation(hold, amount=2)
    return {
        "replayed": replayed,
        "granted": [b.initial_quantity for b in granted],
        "consumed": consumed,
        "order_status": Order.objects.get(pk=order.pk).status,
        "exchanged": exchanged,
        "balances_after": {name: {key: TransactionService.get_balance(pk, key)
                                  for key in ("CREDITS", "COINS")}
                           for name, pk in users.items()},
        "ledger_problems": check_ledger(),
    }


def main(snapshot_path: str, out: str, mode: str) -> None:
    import django

    django.setup()
    from django.db import connection
    from rows import dump_rows, schema_of

    import billable.models as models

    snapshot = json.loads(Path(snapshot_path).read_text())
    if mode == "rows":
        result: dict[str, Any] = {"rows": dump_rows(models)}
    else:
        result = {"reads": reads(snapshot), "schema": schema_of(connection),
                  "writes": writes(snapshot)}
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
