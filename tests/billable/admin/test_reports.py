"""Customer/product reports: running balance, spendability rule, and HTML escaping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billable.admin.reports import build_customer_report, build_product_report
from billable.models import ExternalIdentity

pytestmark = pytest.mark.django_db

XSS = "<script>alert('x')</script>"


@pytest.fixture
def history(user, make_product, make_offer, grant, spend):
    """10 granted, 3 spent, 5 granted later, 4 spent; plus an expired, unswept batch of 7."""
    credits = make_product("CREDITS", name="Credits")
    offer = make_offer("PACK", items=[(credits, 10)], price="1")
    start = timezone.now() - timedelta(days=10)
    first = grant(user, credits, 10, offer=offer, created_at=start)
    spend(first, 3, at=start + timedelta(hours=1))
    second = grant(user, credits, 5, action_type="manual_grant",
                   created_at=start + timedelta(days=1))
    spend(second, 4, at=start + timedelta(days=2))
    grant(user, credits, 7, created_at=start - timedelta(days=40), expires_in=timedelta(days=30))
    return credits


def test_product_report_running_balance_and_spendability(user, history):
    report = build_product_report(user.pk, history)
    assert [(r.credit, r.debit, r.balance) for r in report.rows] == [
        (7, 0, 7), (10, 0, 17), (0, 3, 14), (5, 0, 19), (0, 4, 15)]
    assert (report.total_credit, report.total_debit, report.ledger_balance) == (22, 7, 15)
    assert report.spendable == 8  # the expired batch does not count, swept or not
    states = [s.state_label for s in report.sources]
    assert states[0] == "Expired (expiry job pending)" and states[1:] == ["Active", "Active"]
    assert [s.action_type for s in report.sources] == ["purchase", "purchase", "manual_grant"]
    assert "(PACK)" in report.sources[1].source.label
    assert report.sources[2].source.label == "Manual grant"


def test_long_histories_fold_into_an_opening_balance(user, history):
    report = build_product_report(user.pk, history, limit=2)
    assert report.folded_rows == 3
    assert report.opening_balance == 14
    assert [r.balance for r in report.rows] == [19, 15]


def test_customer_report_lists_balances_per_product(user, history, make_product, grant):
    grant(user, make_product("VIP", name="Vip"), 1)
    report = build_customer_report(user)
    lines = {line.product.product_key: line for line in report.products}
    assert (lines["CREDITS"].credited, lines["CREDITS"].debited) == (22, 7)
    assert lines["CREDITS"].spendable == 8 and lines["VIP"].spendable == 1


def test_report_pages_render_and_show_the_balance(admin_client, user, history):
    page = admin_client.get(reverse("admin:billable_customer_product_report",
                                    args=[user.pk, history.pk]))
    assert page.status_code == 200
    assert page.context["report"].spendable == 8
    customer_page = admin_client.get(reverse("admin:billable_customer_report", args=[user.pk]))
    assert customer_page.status_code == 200
    assert b"Credits" in customer_page.content


def test_report_pages_answer_404_for_unknown_ids(admin_client, user, history):
    for args in ([user.pk, 999_999], [999_999, history.pk], ["abc", history.pk]):
        url = reverse("admin:billable_customer_product_report", args=args)
        assert admin_client.get(url).status_code == 404
    assert admin_client.get(reverse("admin:billable_customer_report",
                                    args=[999_999])).status_code == 404


def test_user_supplied_text_is_escaped_everywhere(admin_client, user, make_product, make_offer,
                                                  grant, spend):
    product = make_product("CREDITS", name=f"Credits {XSS}")
    offer = make_offer("PACK", name=XSS, items=[(product, 5)], price="1")
    batch = grant(user, product, 5, offer=offer, action_type=XSS)
    spend(batch, 1, action_type=XSS, action_id=XSS)
    ExternalIdentity.objects.create(provider="telegram", external_id=XSS, user=user)
    pages = [
        reverse("admin:billable_customer_product_report", args=[user.pk, product.pk]),
        reverse("admin:billable_customer_report", args=[user.pk]),
        reverse("admin:billable_customer_change", args=[user.pk]),
        reverse("admin:billable_customer_changelist"),
        reverse("admin:billable_product_change", args=[product.pk]),
        reverse("admin:billable_transaction_changelist"),
        reverse("admin:billable_quotabatch_change", args=[batch.pk]),
    ]
    for url in pages:
        content = admin_client.get(url).content.decode()
        assert "&lt;script&gt;" in content, url
        assert "<script>alert" not in content, url


def test_customer_page_links_to_that_customers_batches(admin_client, user, make_user,
                                                       history, grant):
    other = make_user()
    grant(other, history, 1)
    url = reverse("admin:billable_quotabatch_changelist") + f"?user__exact={user.pk}"
    assert url in admin_client.get(reverse("admin:billable_customer_change",
                                           args=[user.pk])).content.decode()
    response = admin_client.get(url)
    assert response.status_code == 200
    assert {b.user_id for b in response.context["cl"].result_list} == {user.pk}
