"""A separate process for the two-process race tests: ``python -m
tests.billable.growth.race_worker <promo|gift> <code-or-token> <start_at> <user ids…>``.

It connects to the database named by ``DATABASE_URL``, waits until ``start_at`` (epoch
seconds, so both processes start together), runs one redemption / claim per user id in its
own thread and prints ``{"ok": n, "errors": {code: n}}`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from billable.growth.gifts import GiftService
    from billable.growth.promo import PromoService
    from tests.helpers import run_in_threads

    kind, ref, start_at, *users = argv
    ids = [int(u) for u in users]
    time.sleep(max(0.0, float(start_at) - time.time()))
    if kind == "promo":
        results = run_in_threads(len(ids), lambda i: PromoService.redeem(ref, user_id=ids[i]))
    else:
        results = run_in_threads(len(ids), lambda i: GiftService.claim(ref, user_id=ids[i]))
    errors = Counter(getattr(r, "code", type(r).__name__) for r in results
                     if isinstance(r, BaseException))
    print(json.dumps({"ok": len(results) - sum(errors.values()), "errors": dict(errors)}))


if __name__ == "__main__":
    main(sys.argv[1:])
