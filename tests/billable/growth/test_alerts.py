"""Alerts: one notice per crossing per batch, an expiry reminder once per batch, opt-out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from billable.growth.alerts import AlertService, threshold_for
from billable.models import AlertNotice, ProductAlert
from billable.services import TransactionService

pytestmark = pytest.mark.django_db


def spend(user: Any, amount: int) -> None:
    result = TransactionService.consume_quota(user.pk, "CREDITS", amount=amount)
    assert result["success"], result


def test_low_balance_once_per_crossing_and_again_after_a_top_up(user, shop):
    ProductAlert.objects.create(product=shop["credits"], low_balance_units=3)
    TransactionService.grant_offer(user.pk, shop["pack"])       # 10
    assert AlertService.scan().low_balance == 0
    spend(user, 7)                                              # 3: crossed
    assert AlertService.scan().low_balance == 1
    spend(user, 1)                                              # still low
    assert AlertService.scan().low_balance == 0
    TransactionService.grant_offer(user.pk, shop["pack"])       # 12: topped up
    assert AlertService.scan().low_balance == 0
    spend(user, 10)                                             # 2: a new crossing
    assert AlertService.scan().low_balance == 1
    assert AlertService.scan().low_balance == 0
    assert AlertNotice.objects.filter(kind="low_balance").count() == 2


def test_a_balance_topped_up_before_the_scan_is_not_low(user, shop):
    ProductAlert.objects.create(product=shop["credits"], low_balance_percent=20)
    TransactionService.grant_offer(user.pk, shop["pack"])
    spend(user, 9)
    TransactionService.grant_offer(user.pk, shop["pack"])       # 11 > 20% of 10
    assert AlertService.scan().low_balance == 0


def test_threshold_in_percent_of_the_last_grant():
    rule = ProductAlert(low_balance_percent=25)
    assert threshold_for(rule, 10) == 2
    assert threshold_for(ProductAlert(low_balance_percent=25, low_balance_units=5), 10) == 5
    assert threshold_for(ProductAlert(), 10) is None


def test_expiry_reminder_once_per_batch(user, make_product, make_offer):
    pro = make_product("PRO", product_type="period")
    month = make_offer("PRO_M", items=[(pro, 1, "days", 5)], price="10", currency="XTR")
    ProductAlert.objects.create(product=pro, expiry_days=7)
    TransactionService.grant_offer(user.pk, month)
    assert AlertService.scan().expiring == 1
    assert AlertService.scan().expiring == 0
    TransactionService.grant_offer(user.pk, month)              # extended: ends in 10 days
    assert AlertService.scan().expiring == 0
    later = timezone.now() + timedelta(days=4)
    assert AlertService.scan(now=later).expiring == 1


def test_expiry_of_an_empty_batch_is_not_reminded(user, make_product, make_offer):
    credits = make_product("TOKENS")
    pack = make_offer("TOK_3", items=[(credits, 3, "days", 2)], price="1", currency="XTR")
    ProductAlert.objects.create(product=credits, expiry_days=3)
    TransactionService.grant_offer(user.pk, pack)
    TransactionService.consume_quota(user.pk, "TOKENS", amount=3)
    assert AlertService.scan().expiring == 0


def test_signals_are_sent_after_commit(user, shop, django_capture_on_commit_callbacks):
    from billable.signals import quota_low

    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    quota_low.connect(receiver)
    try:
        ProductAlert.objects.create(product=shop["credits"], low_balance_units=5)
        TransactionService.grant_offer(user.pk, shop["free"])
        with django_capture_on_commit_callbacks(execute=True):
            AlertService.scan()
    finally:
        quota_low.disconnect(receiver)
    assert [(s["user_id"], s["product_key"], s["balance"], s["threshold"]) for s in seen] == [
        (user.pk, "CREDITS", 5, 5)]


def test_opt_out(user):
    assert AlertService.is_enabled(user.pk)
    AlertService.set_enabled(user.pk, False)
    assert not AlertService.is_enabled(user.pk)
    AlertService.set_enabled(user.pk, True)
    assert AlertService.is_enabled(user)


def test_alerts_are_outbound_events_once_per_crossing_and_batch(user, shop, make_product,
                                                                make_offer):
    from billable.events import outbox
    from billable.models import EventEndpoint, OutboxEvent

    EventEndpoint.objects.create(url="http://127.0.0.1:9/none",
                                 event_types=["quota.low", "batch.expiring"])
    outbox.subscribed_types.clear()
    ProductAlert.objects.create(product=shop["credits"], low_balance_units=3)
    TransactionService.grant_offer(user.pk, shop["pack"])
    spend(user, 8)
    pro = make_product("PRO", product_type="period")
    ProductAlert.objects.create(product=pro, expiry_days=7)
    TransactionService.grant_offer(user.pk, make_offer("PRO_M", items=[(pro, 1, "days", 5)],
                                                       price="10", currency="XTR"))
    AlertService.scan()
    AlertService.scan()  # nothing new: no second event

    events = {e.event_type: e for e in OutboxEvent.objects.all()}
    assert sorted(OutboxEvent.objects.values_list("event_type", flat=True)) == [
        "batch.expiring", "quota.low"]
    low = events["quota.low"].payload
    assert (low["source"], low["remaining"], low["threshold"], low["product_key"]) == (
        "alert", 2, 3, "CREDITS")
    assert events["batch.expiring"].payload["product_key"] == "PRO"
