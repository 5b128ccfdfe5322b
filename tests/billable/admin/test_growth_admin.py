"""Admin of the growth models: pages render, uses are visible, codes are generated as CSV."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from billable.growth.promo import PromoService
from billable.models import (
    AlertNotice,
    Gift,
    NotificationPreference,
    ProductAlert,
    PromoCode,
    PromoRedemption,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def codes(make_user: Any, make_product: Any, make_offer: Any) -> PromoCode:
    credits = make_product("CREDITS")
    offer = make_offer("FREE_5", items=[(credits, 5)], price="0")
    promo = PromoCode.objects.create(code="<b>SPRING</b>", offer=offer, max_uses=10)
    PromoService.redeem("<b>spring</b>", user_id=make_user(username="alice<script>").pk)
    return promo


@pytest.mark.parametrize("model", [PromoCode, PromoRedemption, Gift, ProductAlert, AlertNotice,
                                   NotificationPreference])
def test_changelists_render(admin_client: Any, codes: PromoCode, model: Any) -> None:
    url = reverse(f"admin:billable_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200


def test_a_code_shows_its_uses_escaped(admin_client: Any, codes: PromoCode) -> None:
    listing = admin_client.get(reverse("admin:billable_promocode_changelist")).content.decode()
    assert "1 / 10" in listing and "<B>SPRING</B>" not in listing
    page = admin_client.get(reverse("admin:billable_promocode_change", args=[codes.pk]))
    text = page.content.decode()
    assert "alice&lt;script&gt;" in text and "redeemed" in text


def test_generate_codes_downloads_csv(admin_client: Any, codes: PromoCode) -> None:
    url = reverse("admin:billable_promocode_generate")
    assert admin_client.get(url).status_code == 200
    reply = admin_client.post(url, {"count": "20", "code_prefix": "VIP", "length": "8",
                                    "kind": "grant", "offer": str(codes.offer_id),
                                    "max_uses": "1", "once_per_customer": "on",
                                    "is_active": "on", "batch": "vip", "currency": ""})
    assert reply.status_code == 200, reply.content[:500]
    assert reply["Content-Type"].startswith("text/csv")
    lines = reply.content.decode().strip().splitlines()
    assert len(lines) == 21 and lines[1].startswith("VIP")
    assert PromoCode.objects.filter(batch="vip").count() == 20


def test_export_action(admin_client: Any, codes: PromoCode) -> None:
    reply = admin_client.post(reverse("admin:billable_promocode_changelist"),
                              {"action": "export_csv", "_selected_action": [codes.pk]})
    assert reply["Content-Type"].startswith("text/csv")
    assert "<B>SPRING</B>" in reply.content.decode()


def add_form(codes: PromoCode, **changes: str) -> dict[str, str]:
    return {"code": "NEW", "kind": "grant", "offer": str(codes.offer_id), "percent_off": "",
            "amount_off": "", "currency": "", "max_uses": "1", "once_per_customer": "on",
            "is_active": "on", "batch": "", "metadata": "{}",
            **{f"{prefix}-{field}": value for prefix in ("redemptions",)
               for field, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))},
            **changes}


@pytest.mark.parametrize(("changes", "message"), [
    ({"max_uses": "0"}, "max_uses must be at least 1"),
    ({"offer": ""}, "A grant code needs an offer."),
    ({"kind": "percent", "percent_off": "150"}, "percent_off must be between 1 and 100."),
    ({"kind": "fixed"}, "A fixed code needs amount_off."),
])
def test_the_add_form_refuses_a_code_nobody_could_use(admin_client: Any, codes: PromoCode,
                                                      changes: dict[str, str],
                                                      message: str) -> None:
    reply = admin_client.post(reverse("admin:billable_promocode_add"), add_form(codes, **changes))
    assert reply.status_code == 200 and message in reply.content.decode()
    assert not PromoCode.objects.filter(code="NEW").exists()
    reply = admin_client.post(reverse("admin:billable_promocode_add"), add_form(codes))
    assert reply.status_code == 302 and PromoCode.objects.get(code="NEW").max_uses == 1


def test_generate_page_refuses_max_uses_0(admin_client: Any, codes: PromoCode) -> None:
    reply = admin_client.post(reverse("admin:billable_promocode_generate"), {
        "count": "5", "code_prefix": "VIP", "length": "8", "kind": "grant",
        "offer": str(codes.offer_id), "max_uses": "0", "is_active": "on", "currency": ""})
    assert reply.status_code == 200 and "max_uses must be at least 1" in reply.content.decode()
    assert PromoCode.objects.count() == 1
