"""Support of the peer (black-box) REST suite: clients, a demo catalog, response checks.

The peer suite is written from the contract (SPEC section 6, the published 0.2 README) and
talks to the API over HTTP only: Django's test ``Client`` on the mounted URLs
(``include("billable.urls")`` at ``/api/v1/billing/``), ``ninja.testing.TestAsyncClient(router)``
with router-relative paths, or a real server (``test_peer_rest_http.py``). Data is set up
through the public models and services, as a host application would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client
from ninja.testing import TestAsyncClient

MOUNT = "/api/v1/billing"
#: The start of an ISO 8601 date-time as the API writes it.
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def token() -> str:
    return str(settings.BILLABLE_API_TOKEN)


@dataclass
class Answer:
    """One response: status, parsed JSON (``None`` when the body is not JSON), raw text."""

    status: int
    body: Any
    text: str
    headers: dict[str, str]


def _answer(response: Any) -> Answer:
    text = response.content.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    return Answer(response.status_code, body, text, dict(response.headers.items()))


class Peer:
    """Django's test client on the mounted API, with an ``Authorization`` header."""

    def __init__(self, auth: str | None = "default", *, mount: str = MOUNT) -> None:
        if auth == "default":
            auth = f"Bearer {token()}"
        self.headers = {"Authorization": auth} if auth is not None else {}
        self.mount = mount
        self.client = Client(raise_request_exception=False)

    def get(self, path: str, params: Any = None) -> Answer:
        return _answer(self.client.get(self.mount + path, params or {}, headers=self.headers))

    def post(self, path: str, payload: Any = None, *, raw: bytes | str | None = None,
             content_type: str = "application/json") -> Answer:
        body = raw if raw is not None else json.dumps({} if payload is None else payload)
        return _answer(self.client.post(self.mount + path, body, content_type=content_type,
                                        headers=self.headers))

    def ok(self, method: str, path: str, payload: Any = None) -> Any:
        """The JSON body of a request that must succeed with 200."""
        answer = self.get(path, payload) if method == "GET" else self.post(path, payload)
        assert answer.status == 200, (method, path, answer.status, answer.text)
        return answer.body


def router_call(method: str, path: str, *, json_body: Any = None, auth: str | None = None,
                ) -> Answer:
    """One request through ``TestAsyncClient(billable.api.router)`` (router-relative path)."""
    from billable.api import router

    headers = {"Authorization": auth if auth is not None else f"Bearer {token()}"}
    client = TestAsyncClient(router, headers=headers)
    kwargs: dict[str, Any] = {}
    if json_body is not None:
        kwargs["json"] = json_body
    response = async_to_sync(client.request)(method, path, **kwargs)
    return _answer(response)


def assert_refused(answer: Answer, status: int | None = None) -> None:
    """A clean refusal: a 4xx, a JSON body with a readable message, no traceback."""
    assert 400 <= answer.status < 500, (answer.status, answer.text[:500])
    if status is not None:
        assert answer.status == status, (answer.status, answer.text[:500])
    assert answer.body is not None, f"not JSON: {answer.text[:300]!r}"
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    assert message_of(answer), answer.text[:300]


def message_of(answer: Answer) -> str:
    """The human-readable message of an error body (envelope ``message`` or Ninja ``detail``)."""
    body = answer.body
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("message"), str):
        return str(body["message"])
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(str(item.get("msg", item)) for item in detail)
    return ""


@dataclass
class Shop:
    """The demo catalog used by the peer suite (created through the models)."""

    tokens: Any
    premium: Any
    gems: Any
    pack: Any          # PACK_10: 10 tokens for 9.99 USD
    premium_30: Any    # PREMIUM_30: 30 days premium for 4.99 USD
    trial: Any         # TRIAL_FREE: 5 tokens, free
    gem_pack: Any      # GEM_PACK: 100 gems for 1.00 USD
    tokens_for_gems: Any  # TOKENS_FOR_GEMS: 10 tokens for 30 GEMS
    premium_pack: Any  # OFF_PREMIUM_PACK (the README's SKU): 50 tokens + 30 days, 19.90 USD
    welcome: Any       # OFF_WELCOME_TRIAL (the README's SKU): 3 tokens, free


def build_shop() -> Shop:
    from billable.models import Offer, OfferItem, Product

    def product(key: str, name: str, kind: str = "quantity", **extra: Any) -> Any:
        return Product.objects.create(product_key=key, name=name, product_type=kind, **extra)

    def offer(sku: str, name: str, price: str, items: list[tuple[Any, ...]],
              currency: str = "USD") -> Any:
        made = Offer.objects.create(sku=sku, name=name, price=Decimal(price), currency=currency)
        for item_product, quantity, *period in items:
            OfferItem.objects.create(offer=made, product=item_product, quantity=quantity,
                                     period_unit=period[0] if period else "forever",
                                     period_value=period[1] if period else None)
        return made

    tokens = product("tokens", "AI Tokens")
    premium = product("premium", "Premium Access", "period")
    gems = product("gems", "Gems", is_currency=True)
    return Shop(
        tokens=tokens, premium=premium, gems=gems,
        pack=offer("pack_10", "Ten tokens", "9.99", [(tokens, 10)]),
        premium_30=offer("premium_30", "Premium month", "4.99", [(premium, 1, "days", 30)]),
        trial=offer("trial_free", "Free trial", "0", [(tokens, 5)]),
        gem_pack=offer("gem_pack", "Gem pack", "1.00", [(gems, 100)]),
        tokens_for_gems=offer("tokens_for_gems", "Tokens for gems", "30", [(tokens, 10)],
                              currency="GEMS"),
        premium_pack=offer("off_premium_pack", "Premium pack", "19.90",
                           [(tokens, 50), (premium, 1, "days", 30)]),
        welcome=offer("off_welcome_trial", "Welcome trial", "0", [(tokens, 3)]),
    )


def new_user(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create(username=username)


def identity_count() -> int:
    from billable.models import ExternalIdentity

    return ExternalIdentity.objects.count()


def give(user: Any, offer: Any) -> None:
    """Grant ``offer`` to ``user`` as the host would (manual grant through the service)."""
    from billable.services import TransactionService

    TransactionService.grant_offer(user.pk, offer, source="manual_grant")
