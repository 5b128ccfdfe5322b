"""Promo codes and gifts under real concurrency (PostgreSQL): threads, and two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from billable.growth.gifts import GiftService
from billable.growth.promo import PromoService
from billable.ledger.audit import check_ledger
from billable.models import Gift, PromoCode, PromoIdentityUse, PromoRedemption, QuotaBatch
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]


def codes_of(results: list[Any]) -> list[str]:
    return sorted(getattr(r, "code", type(r).__name__) for r in results
                  if isinstance(r, BaseException))


def test_fifty_threads_redeem_a_code_limited_to_ten(make_user, shop, make_code):
    make_code("TEN", offer=shop["free"], max_uses=10)
    users = [make_user() for _ in range(50)]
    results = run_in_threads(50, lambda i: PromoService.redeem("ten", user_id=users[i].pk))
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert codes_of(results) == ["promo_exhausted"] * 40
    assert PromoCode.objects.get().uses_count == 10
    assert QuotaBatch.objects.count() == 10 == PromoRedemption.objects.count()
    assert check_ledger() == []


def test_fifty_threads_reserve_a_discount_limited_to_ten(make_user, shop, make_code):
    make_code("TENOFF", kind="percent", percent_off=10, offer=shop["pack"], max_uses=10)
    users = [make_user() for _ in range(50)]
    results = run_in_threads(50, lambda i: PromoService.redeem("tenoff", user_id=users[i].pk))
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert PromoCode.objects.get().uses_count == 10


def test_one_identity_in_many_threads_redeems_once(make_user, shop, make_code):
    make_code("ONCE", offer=shop["free"])
    users = [make_user() for _ in range(8)]
    results = run_in_threads(8, lambda i: PromoService.redeem(
        "once", user_id=users[i].pk, identities={"telegram": 777}))
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert codes_of(results) == ["promo_already_used"] * 7
    assert PromoIdentityUse.objects.filter(identity_type="telegram").count() == 1


def _processes(kind: str, ref: str, groups: list[list[int]]) -> list[dict[str, Any]]:
    name = connection.settings_dict["NAME"]
    settings = connection.settings_dict
    url = (f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:"
           f"{settings['PORT'] or 5432}/{name}")
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    start_at = str(time.time() + 3.0)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.billable.growth.race_worker", kind, ref, start_at,
         *map(str, ids)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for ids in groups]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def test_two_processes_redeem_a_code_limited_to_ten(make_user, shop, make_code):
    make_code("PROC", offer=shop["free"], max_uses=10)
    ids = [make_user().pk for _ in range(50)]
    outputs = _processes("promo", "proc", [ids[:25], ids[25:]])
    assert sum(o["ok"] for o in outputs) == 10
    assert sum(o["errors"].get("promo_exhausted", 0) for o in outputs) == 40
    assert PromoCode.objects.get().uses_count == 10 == QuotaBatch.objects.count()
    assert check_ledger() == []


def test_ten_threads_claim_one_gift_once(make_user, paid_gift):
    buyer = make_user()
    gift = paid_gift(buyer)
    users = [make_user() for _ in range(10)]
    results = run_in_threads(10, lambda i: GiftService.claim(gift.token, user_id=users[i].pk))
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert codes_of(results) == ["gift_already_claimed"] * 9
    assert QuotaBatch.objects.count() == 1
    assert Gift.objects.get().status == "claimed"
    assert check_ledger() == []


def test_two_processes_claim_one_gift_once(make_user, paid_gift):
    buyer = make_user()
    gift = paid_gift(buyer)
    ids = [make_user().pk for _ in range(10)]
    outputs = _processes("gift", gift.token, [ids[:5], ids[5:]])
    assert sum(o["ok"] for o in outputs) == 1
    assert sum(o["errors"].get("gift_already_claimed", 0) for o in outputs) == 9
    assert QuotaBatch.objects.count() == 1
    assert check_ledger() == []
