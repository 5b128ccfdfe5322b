"""The growth receivers when the database goes away right after a payment's commit.

``order_confirmed`` / ``order_refunded`` run their receivers after the commit
(``send_robust``). A connection the server dropped in between (a restart) must cost one warning
line — no traceback in the log (issue 11: none reaches a log) — and lose nothing: the sweep
settles the promo use, and a gift is claimable only while its order is paid.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
from django.db import connection

from billable.growth.promo import PromoService
from billable.models import Order, PromoRedemption
from billable.signals import order_confirmed, order_refunded
from tests.helpers import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def drop_this_connection() -> None:
    """Terminate this thread's database connection from another one (what a restart does)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.exc_info]


def test_a_dropped_connection_after_payment_is_one_line_and_the_sweep_settles(
        user: Any, shop: dict[str, Any], make_code: Any, caplog: pytest.LogCaptureFixture
) -> None:
    make_code("HALF", kind="percent", percent_off=50, offer=shop["pack"])
    order = PromoService.redeem("half", user_id=user.pk).order
    assert order is not None
    Order.objects.filter(pk=order.pk).update(status="paid", payment_id="charge-1")
    order.refresh_from_db()
    drop_this_connection()
    with caplog.at_level(logging.WARNING):
        answers = order_confirmed.send_robust(sender=Order, order=order)
        answers += order_refunded.send_robust(sender=Order, order=order)
    failed = [(receiver.__name__, answer) for receiver, answer in answers
              if isinstance(answer, Exception)]
    assert failed == []
    left = [r.getMessage() for r in caplog.records if "left to the sweep" in r.getMessage()]
    assert len(left) == 2, caplog.text
    assert "promo settlement of order" in left[0] and "gift refund mark of order" in left[1]
    assert tracebacks(caplog.records) == [], caplog.text
    connection.close()  # the broken connection: the next query opens a new one
    assert PromoRedemption.objects.get().status == "reserved"  # the receiver did not run
    PromoService.release_stale(older_than=0)
    assert PromoRedemption.objects.get().status == "redeemed"


def test_a_bug_in_a_receiver_still_shows_its_traceback(
        user: Any, shop: dict[str, Any], make_code: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Only an unreachable database is quiet: any other error propagates to ``send_robust``,
    which logs it with its traceback."""
    make_code("HALF", kind="percent", percent_off=50, offer=shop["pack"])
    order = PromoService.redeem("half", user_id=user.pk).order
    assert order is not None

    def broken(order_id: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(PromoService, "settle_order", broken)
    with caplog.at_level(logging.WARNING):
        answers = order_confirmed.send_robust(sender=Order, order=order)
    assert [type(a).__name__ for r, a in answers if isinstance(a, Exception)] == ["ValueError"]
    assert tracebacks(caplog.records), caplog.text
