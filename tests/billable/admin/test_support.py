"""The admin for support work (issue 18): find a customer by Telegram username, name or id,
see them by name, their page shows identities, balances, holds, orders and payments with links;
Stars are whole; product autocomplete in offer items; plural names."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib import admin
from django.urls import reverse

from billable.models import Customer, Reservation
from tests.billable.admin.support_data import ALICE_TG_ID, BOB_TG_ID, build_support_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def support() -> Any:
    return build_support_data()


def customers_found(admin_client: Any, term: str) -> list[str]:
    """The display names in the customer changelist for search ``term``."""
    response = admin_client.get(reverse("admin:billable_customer_changelist"), {"q": term})
    assert response.status_code == 200
    return re.findall(r'<th class="field-__str__"><a href="[^"]+">([^<]+)</a>',
                      response.content.decode())


@pytest.mark.parametrize("term", ["@alice_stars", "alice_stars", "ALICE_S", "Moreau", "alice",
                                  ALICE_TG_ID, "Alice Moreau"])
def test_search_finds_the_customer_by_username_name_or_id(admin_client, support, term):
    assert customers_found(admin_client, term) == ["Alice Moreau (@alice_stars)"]


def test_search_for_someone_else_does_not_find_alice(admin_client, support):
    assert customers_found(admin_client, "@bobby") == ["Bob (@bobby)"]
    assert customers_found(admin_client, BOB_TG_ID) == ["Bob (@bobby)"]
    assert customers_found(admin_client, "@nobody_here") == []


def test_customers_are_listed_by_display_name_not_generated_username(admin_client, support):
    assert support.alice.username == f"billable_telegram_{ALICE_TG_ID}"
    names = customers_found(admin_client, "")
    assert sorted(names) == ["Alice Moreau (@alice_stars)", "Bob (@bobby)"]
    assert str(Customer.objects.get(pk=support.alice.pk)) == "Alice Moreau (@alice_stars)"
    for name in ("quotabatch", "transaction", "order", "reservation", "externalidentity"):
        page = admin_client.get(reverse(f"admin:billable_{name}_changelist")).content.decode()
        assert "Alice Moreau (@alice_stars)" in page, name
        assert f">billable_telegram_{ALICE_TG_ID}<" not in page, name


def test_identity_search_by_telegram_username(admin_client, support):
    response = admin_client.get(reverse("admin:billable_externalidentity_changelist"),
                                {"q": "@alice_stars"})
    page = response.content.decode()
    assert ALICE_TG_ID in page and BOB_TG_ID not in page
    assert "Alice Moreau @alice_stars" in page


def test_customer_page_shows_identities_balances_holds_orders_and_payments(admin_client,
                                                                           support):
    page = admin_client.get(reverse("admin:billable_customer_change",
                                    args=[support.alice.pk])).content.decode()
    identity = support.alice.billable_external_identities.get()
    assert f'href="/admin/billable/externalidentity/{identity.pk}/change/"' in page
    assert f"telegram:{ALICE_TG_ID}" in page
    # balance per product: 100 granted, 12 consumed, 5 held → 83 spendable
    products = page.split('field-products_overview')[1].split("</table>")[0]
    assert "Image credits" in products and "<strong>83</strong>" in products
    holds = page.split('class="billable-holds"')[1].split("</table>")[0]
    hold = Reservation.objects.get(pk=support.hold_id)
    assert f'href="/admin/billable/reservation/{hold.pk}/change/"' in holds
    assert "<td>5</td>" in holds and "render" in holds
    orders = page.split('class="billable-orders"')[1].split("</table>")[0]
    for order in (support.paid_order, support.pending_order):
        assert f'href="/admin/billable/order/{order.pk}/change/">#{order.pk}</a>' in orders
    assert "<td>50 XTR</td>" in orders and "<td>250 XTR</td>" in orders
    assert "50.00" not in orders
    payments = page.split('class="billable-payments"')[1].split("</table>")[0]
    assert "stxAbC123-charge" in payments and "50 XTR" in payments
    assert f'href="/admin/bot_kit/telegrampayment/{support.payment.pk}/change/"' in payments
    assert f'href="/admin/billable/order/{support.paid_order.pk}/change/"' in payments
    assert payments.count("stxAbC123-charge") == 1  # the paid order is not listed twice


def test_customer_page_without_holds_or_orders(admin_client, support):
    page = admin_client.get(reverse("admin:billable_customer_change",
                                    args=[support.bob.pk])).content.decode()
    assert "No open holds." in page and "No orders." in page and "No payments." in page


def test_star_prices_are_whole_everywhere(admin_client, support):
    offers = admin_client.get(reverse("admin:billable_offer_changelist")).content.decode()
    assert '<td class="field-price_display">50</td>' in offers
    assert '<td class="field-price_display">250</td>' in offers
    form = admin_client.get(reverse("admin:billable_offer_change",
                                    args=[support.pack.pk])).content.decode()
    assert re.search(r'name="price" value="50"', form), "the price input shows 50, not 50.00"
    orders = admin_client.get(reverse("admin:billable_order_changelist")).content.decode()
    assert '<td class="field-total">50</td>' in orders and "50.00" not in orders
    order = admin_client.get(reverse("admin:billable_order_change",
                                     args=[support.paid_order.pk])).content.decode()
    assert "50.00" not in order
    assert re.search(r'<td class="field-unit_price">\s*<p>50 XTR</p>', order)
    product = admin_client.get(reverse("admin:billable_product_change",
                                       args=[support.credits.pk])).content.decode()
    assert "PACK_100</a> — 50 XTR × 100" in product
    report = admin_client.get(reverse("admin:billable_customer_report",
                                      args=[support.alice.pk])).content.decode()
    assert "<td>50 XTR</td>" in report and "50.00" not in report
    dashboard = admin_client.get(reverse("admin:billable_revenuedashboard_changelist"))
    page = dashboard.content.decode()
    assert '<span class="value">50 XTR</span>' in page and "50.00" not in page
    assert 'data-value="50"' in page  # the chart bars and labels too


def test_saving_a_whole_star_price_keeps_it(admin_client, support):
    """The form shows 50 and saving it unchanged stores 50 (no rounding surprises)."""
    from billable.models import Offer

    form = admin_client.get(reverse("admin:billable_offer_change", args=[support.pack.pk]))
    assert form.context["adminform"].form.initial["price"] == 50
    assert Offer.objects.get(pk=support.pack.pk).price == 50


def test_fiat_prices_keep_their_cents(admin_client, support, make_offer):
    make_offer("USD_PACK", price="9.90", currency="USD")
    offers = admin_client.get(reverse("admin:billable_offer_changelist")).content.decode()
    assert '<td class="field-price_display">9.90</td>' in offers


def test_offer_items_pick_products_by_autocomplete(admin_client, support):
    page = admin_client.get(reverse("admin:billable_offer_add")).content.decode()
    select = re.search(r'<select name="items-0-product"[^>]*>', page)
    assert select is not None and "admin-autocomplete" in select.group(0)
    assert 'data-field-name="product"' in select.group(0)
    found = admin_client.get(reverse("admin:autocomplete"), {
        "app_label": "billable", "model_name": "offeritem", "field_name": "product",
        "term": "credit"}).json()
    assert [row["text"] for row in found["results"]] == [str(support.credits)]


#: The plural name of every model in the admin sidebar (checked against the registry).
PLURALS = {
    "billable.alertnotice": "alert notices",
    "billable.apikey": "API keys",
    "billable.customer": "customers",
    "billable.customermerge": "customer merges",
    "billable.eventdelivery": "event deliveries",
    "billable.eventendpoint": "event endpoints",
    "billable.externalidentity": "external identities",
    "billable.gift": "gifts",
    "billable.idempotencykey": "idempotency keys",
    "billable.notificationpreference": "notification preferences",
    "billable.offer": "offers",
    "billable.order": "orders",
    "billable.outboxevent": "outbox events",
    "billable.product": "products",
    "billable.productalert": "product alerts",
    "billable.promocode": "promo codes",
    "billable.promoredemption": "promo redemptions",
    "billable.quotabatch": "quota batches",
    "billable.referral": "referrals",
    "billable.reservation": "reservations",
    "billable.revenuedashboard": "revenue dashboard",
    "billable.transaction": "transactions",
    "billable.trialhistory": "trial history",
    "bot_kit.inboxupdate": "inbox updates",
    "bot_kit.refundrequest": "refund requests",
    "bot_kit.starsubscription": "star subscriptions",
    "bot_kit.telegrampayment": "telegram payments",
}


def test_every_plural_name_in_the_admin_is_right(admin_client):
    registered = {model._meta.label_lower: str(model._meta.verbose_name_plural)
                  for model in admin.site._registry
                  if model._meta.app_label in ("billable", "bot_kit")}
    assert registered == PLURALS
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "Quota batches" in index and "batchs" not in index.lower()


def test_the_customer_page_links_lead_to_filtered_lists(admin_client, support):
    page = admin_client.get(reverse("admin:billable_customer_change",
                                    args=[support.alice.pk])).content.decode()
    for listing, expected in (("reservation", 1), ("order", 2)):
        link = re.search(rf'href="(/admin/billable/{listing}/\?[^"]+)"', page)
        assert link is not None, listing
        response = admin_client.get(link.group(1).replace("&amp;", "&"))
        assert response.status_code == 200, listing
        assert response.context["cl"].result_count == expected, listing
