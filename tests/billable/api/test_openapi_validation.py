"""The OpenAPI document states the server's validation (issue 18).

1. The served ``openapi.json`` is walked: every string a client sends carries a ``maxLength``
   and a ``pattern`` that refuses NUL, and each field the server validates carries the exact
   constraint (``minLength``, ``minItems``, non-blank patterns, numeric bounds) — table
   :data:`CONSTRAINTS`.
2. For each constrained field a value the schema forbids is sent to the server and refused with
   a 4xx and a stable code (``data.error`` of the envelope, or the validation ``type`` of a
   ``422``), and the boundary value the schema allows is accepted — table :data:`CASES`. Each
   value is first checked against the field's schema (a small validator below), so the two
   halves cannot drift apart.

The REST contract is unchanged: the schema gained keywords, the server answers as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from billable.models import Offer, OfferItem, Product
from billable.schemas.common import NO_NUL, NOT_BLANK
from billable.services import OrderService, TransactionService
from billable.services.order_input import MAX_LINE_QUANTITY
from billable.services.validation import MAX_AMOUNT, MAX_DB_ID

pytestmark = pytest.mark.django_db

MOUNT = "/api/v1/billing"
AUTH = {"HTTP_AUTHORIZATION": "Bearer test-token-0123456789abcdef"}


# --------------------------------------------------------------------------- the document

@pytest.fixture
def openapi(client: Client) -> dict[str, Any]:
    response = client.get(f"{MOUNT}/openapi.json", **AUTH)
    assert response.status_code == 200
    return response.json()


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref``s, also through an optional body (``anyOf: [{$ref}, {type: null}]``)."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1 and "$ref" in branches[0]:
        schema = branches[0]
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def inputs(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """``("POST /wallet/consume", "body.product_key") → schema`` for every client input."""
    found = {}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path.removeprefix(MOUNT)}"
            for param in operation.get("parameters", []):
                found[(name, f"{param['in']}.{param['name']}")] = param["schema"]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                for prop, schema in resolve(doc, body["schema"]).get("properties", {}).items():
                    found[(name, f"body.{prop}")] = schema
    return found


def strings_in(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas a value of ``schema`` may take (through anyOf, arrays, lines)."""
    if "anyOf" in schema:
        return [s for branch in schema["anyOf"] for s in strings_in(branch)]
    if schema.get("type") == "string":
        return [schema]
    if schema.get("type") == "array":
        return strings_in(schema.get("items", {}))
    if schema.get("type") == "object":
        return [s for prop in schema.get("properties", {}).values() for s in strings_in(prop)]
    return []


def branch(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """The ``kind`` ("string", "integer", "array") branch of a possibly nullable schema."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == kind:
            return option
    raise AssertionError(f"no {kind} branch in {schema}")


def test_every_string_a_client_sends_is_bounded_and_refuses_nul(openapi):
    checked = 0
    for (operation, name), schema in inputs(openapi).items():
        for string in strings_in(schema):
            if string.get("format") == "date-time":
                continue  # parsed as a datetime; NUL can never form one
            where = f"{operation} {name}"
            assert "pattern" in string, where
            assert re.search(string["pattern"], "ok\x00") is None, where
            if name != "query.start" and name != "query.end":  # dates: the pattern bounds them
                assert "maxLength" in string, where
            checked += 1
    assert checked > 45


#: ``(operation, field, kind) → keywords`` the schema must carry, as the server validates.
CONSTRAINTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST /identify", "body.external_id", "string",
     {"minLength": 1, "maxLength": 255, "pattern": NOT_BLANK}),
    ("POST /identify", "body.provider", "string", {"maxLength": 50, "pattern": NO_NUL}),
    ("POST /wallet/consume", "body.product_key", "string",
     {"minLength": 1, "maxLength": 50, "pattern": NOT_BLANK}),
    ("POST /wallet/consume", "body.action_type", "string",
     {"minLength": 1, "maxLength": 50, "pattern": NOT_BLANK}),
    ("POST /wallet/consume", "body.action_id", "string",
     {"minLength": 1, "maxLength": 255, "pattern": NOT_BLANK}),
    ("POST /wallet/consume", "body.idempotency_key", "string",
     {"minLength": 1, "maxLength": 255, "pattern": NOT_BLANK}),
    ("POST /wallet/consume", "body.amount", "integer", {"minimum": 1, "maximum": MAX_AMOUNT}),
    ("POST /wallet/consume", "body.user_id", "integer", {"minimum": 1, "maximum": MAX_DB_ID}),
    ("POST /wallet/consume", "body.external_id", "string",
     {"minLength": 1, "maxLength": 255, "pattern": NOT_BLANK}),
    ("POST /exchange", "body.sku", "string",
     {"minLength": 1, "maxLength": 50, "pattern": NOT_BLANK}),
    ("POST /exchange", "body.idempotency_key", "string", {"minLength": 1, "pattern": NOT_BLANK}),
    ("POST /demo/trial-grant", "body.sku", "string", {"minLength": 1, "pattern": NOT_BLANK}),
    ("POST /orders", "body.items", "array", {"minItems": 1, "maxItems": 100}),
    ("POST /orders/{order_id}/confirm", "body.payment_id", "string",
     {"maxLength": 255, "pattern": NO_NUL}),
    ("POST /orders/{order_id}/refund", "body.reason", "string",
     {"maxLength": 1000, "pattern": NO_NUL}),
    ("POST /orders/{order_id}/cancel", "path.order_id", "integer",
     {"minimum": 1, "maximum": MAX_DB_ID}),
    ("POST /referrals", "body.referrer_external_id", "string",
     {"minLength": 1, "pattern": NOT_BLANK}),
    ("POST /customers/merge", "body.source_user_id", "integer", {"minimum": 1}),
    ("GET /balance", "query.product_key", "string",
     {"minLength": 1, "maxLength": 50, "pattern": NOT_BLANK}),
    ("GET /wallet", "query.external_id", "string", {"minLength": 1, "pattern": NOT_BLANK}),
    ("GET /user-products", "query.product_key", "string", {"maxLength": 50, "pattern": NO_NUL}),
    ("GET /wallet/transactions", "query.limit", "integer", {"minimum": 1, "maximum": 1000}),
    ("GET /wallet/transactions", "query.cursor", "string", {"maxLength": 255,
                                                            "pattern": NO_NUL}),
    ("GET /catalog/{sku}", "path.sku", "string", {"minLength": 1, "pattern": NOT_BLANK}),
    ("GET /reports/dashboard", "query.bot", "string", {"maxLength": 64}),
]


@pytest.mark.parametrize(("operation", "name", "kind", "keywords"), CONSTRAINTS,
                         ids=[f"{c[0]} {c[1]}" for c in CONSTRAINTS])
def test_the_schema_states_each_validated_field(openapi, operation, name, kind, keywords):
    schema = branch(inputs(openapi)[(operation, name)], kind)
    assert {key: schema.get(key) for key in keywords} == keywords


def test_order_lines_are_described(openapi):
    items = branch(inputs(openapi)[("POST /orders", "body.items")], "array")["items"]
    assert items["required"] == ["sku"]
    assert items["properties"]["sku"]["pattern"] == NOT_BLANK
    assert items["properties"]["sku"]["minLength"] == 1
    quantity = items["properties"]["quantity"]
    assert (quantity["type"], quantity["minimum"], quantity["maximum"]) == (
        "integer", 1, MAX_LINE_QUANTITY)


# --------------------------------------------------------------------------- a validator

def conforms(value: Any, schema: dict[str, Any]) -> bool:
    """Does ``value`` satisfy ``schema``? (The JSON Schema keywords this API uses.)"""
    if "anyOf" in schema:
        return any(conforms(value, option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "null":
        return value is None
    if kind == "string":
        return (isinstance(value, str)
                and len(value) >= schema.get("minLength", 0)
                and len(value) <= schema.get("maxLength", len(value))
                and ("pattern" not in schema or re.search(schema["pattern"], value) is not None))
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)
                and schema.get("minimum", value) <= value <= schema.get("maximum", value))
    if kind == "array":
        return (isinstance(value, list)
                and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
                and all(conforms(item, schema.get("items", {})) for item in value))
    if kind == "object":
        return (isinstance(value, dict)
                and all(key in value for key in schema.get("required", []))
                and all(conforms(value[key], sub)
                        for key, sub in schema.get("properties", {}).items() if key in value))
    return True


# --------------------------------------------------------------------------- the server

K50 = "K" * 50  # a product key of the longest length
X50 = "X" * 50  # an offer SKU of the longest length, bought with COINS


@dataclass
class World:
    user_id: int
    orders: list[int] = field(default_factory=list)

    def order(self, *, paid: bool = False) -> int:
        order = OrderService.create_order(self.user_id, [{"sku": "PACK", "quantity": 1}])
        if paid:
            OrderService.pay_order(order.pk, payment_id=f"charge-{order.pk}")
        return order.pk


def offer(sku: str, product: Product, *, price: str = "1", currency: str = "USD",
          quantity: int = 1) -> Offer:
    made = Offer.objects.create(sku=sku, name=sku[:20], price=Decimal(price), currency=currency)
    OfferItem.objects.create(offer=made, product=product, quantity=quantity)
    return made


@pytest.fixture
def world(make_user) -> World:
    """A buyer (external id ``42``; a friend is ``43``) holding CREDITS, a product with a
    50-character key and COINS (an exchange currency); offers PACK, FREE (price 0), ``L`` × 50
    (a 50-character SKU) and ``X`` × 50 (bought with COINS)."""
    from billable.models import ExternalIdentity

    user = make_user(username="buyer")
    ExternalIdentity.objects.create(provider="default", external_id="42", user=user)
    friend = make_user(username="friend")  # external id 43, for referrals
    ExternalIdentity.objects.create(provider="default", external_id="43", user=friend)
    kinds = Product.ProductType.QUANTITY
    credits = Product.objects.create(product_key="CREDITS", name="Credits", product_type=kinds)
    long_key = Product.objects.create(product_key=K50, name="Long", product_type=kinds)
    coins = Product.objects.create(product_key="COINS", name="Coins", product_type=kinds,
                                   is_currency=True)
    offer("PACK", credits)
    offer("FREE", credits, price="0")
    offer("L" * 50, credits)
    offer(X50, long_key, currency="COINS")
    for grant in (offer("GRANT_CREDITS", credits, price="0", quantity=10),
                  offer("GRANT_COINS", coins, price="0", quantity=10),
                  offer("GRANT_LONG", long_key, price="0", quantity=5)):
        TransactionService.grant_offer(user.pk, grant, source="test")
    return World(user_id=user.pk)


@dataclass(frozen=True)
class Case:
    """One field: a base request, a refused value with its stable code, an accepted value."""

    operation: str  # "POST /wallet/consume" (path parameters written {name})
    name: str  # "body.product_key", "query.limit", "path.order_id"
    bad: Any
    code: str  # data.error of the envelope, or the 422 validation type
    good: Any
    base: dict[str, Any] = field(default_factory=dict)
    path: dict[str, str] = field(default_factory=dict)  # e.g. {"order_id": "pending"}


U = {"external_id": "42"}
CASES = [
    Case("POST /identify", "body.external_id", " ", "value_error", "x" * 255),
    Case("POST /identify", "body.external_id", "x" * 256, "value_error", "x"),
    Case("POST /identify", "body.external_id", "a\x00b", "value_error", "a b"),
    Case("POST /identify", "body.provider", "p" * 51, "string_too_long", "p" * 50,
         base={"external_id": "9"}),
    Case("POST /identify", "body.provider", "tele\x00gram", "value_error", "telegram",
         base={"external_id": "9"}),
    Case("POST /wallet/consume", "body.product_key", " ", "invalid_product_key", K50, base=U),
    Case("POST /wallet/consume", "body.product_key", K50 + "K", "string_too_long", "credits",
         base=U),
    Case("POST /wallet/consume", "body.product_key", "CRED\x00", "value_error", "CREDITS",
         base=U),
    Case("POST /wallet/consume", "body.action_type", "", "invalid_input", "a" * 50,
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.action_type", "a" * 51, "string_too_long", "usage",
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.action_id", "  ", "invalid_input", "a" * 255,
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.idempotency_key", "", "invalid_input", "k" * 255,
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.idempotency_key", "k" * 256, "string_too_long", "k",
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.amount", 0, "greater_than_equal", 1,
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.amount", MAX_AMOUNT + 1, "less_than_equal", 1,
         base={**U, "product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.user_id", 0, "greater_than_equal", "buyer",
         base={"product_key": "CREDITS"}),
    Case("POST /wallet/consume", "body.external_id", "", "value_error", "42",
         base={"product_key": "CREDITS"}),
    Case("POST /exchange", "body.sku", "", "offer_not_found", X50, base=U),
    Case("POST /exchange", "body.idempotency_key", " ", "invalid_input", "x" * 255,
         base={**U, "sku": X50}),
    Case("POST /demo/trial-grant", "body.sku", " ", "invalid_input", "FREE", base=U),
    Case("POST /orders", "body.items", [], "invalid_input", [{"sku": "PACK"}], base=U),
    Case("POST /orders", "body.items", [{"sku": "PACK"}] * 101, "too_long",
         [{"sku": "PACK"}] * 100, base=U),
    Case("POST /orders", "body.items", [{"quantity": 1}], "invalid_input",
         [{"sku": "L" * 50, "quantity": 1}], base=U),
    Case("POST /orders", "body.items", [{"sku": " "}], "invalid_input", [{"sku": "pack"}],
         base=U),
    Case("POST /orders", "body.items", [{"sku": "L" * 51}], "offer_not_found",
         [{"sku": "L" * 50}], base=U),
    Case("POST /orders", "body.items", [{"sku": "PACK", "quantity": 0}], "invalid_amount",
         [{"sku": "PACK", "quantity": 1}], base=U),
    Case("POST /orders", "body.items", [{"sku": "PACK", "quantity": MAX_LINE_QUANTITY + 1}],
         "invalid_amount", [{"sku": "PACK", "quantity": MAX_LINE_QUANTITY}], base=U),
    Case("POST /orders/{order_id}/confirm", "body.payment_id", "p" * 256, "string_too_long",
         "p" * 255, path={"order_id": "pending"}),
    Case("POST /orders/{order_id}/confirm", "body.payment_id", "p\x00", "value_error",
         "charge-1", path={"order_id": "pending"}),
    Case("POST /orders/{order_id}/refund", "body.reason", "r" * 1001, "string_too_long",
         "r" * 1000, path={"order_id": "paid"}),
    Case("POST /orders/{order_id}/cancel", "body.reason", "why\x00", "value_error", "why",
         path={"order_id": "pending"}),
    Case("POST /orders/{order_id}/cancel", "path.order_id", 0, "greater_than_equal",
         "pending"),
    Case("POST /referrals", "body.referrer_external_id", " ", "value_error", "42",
         base={"referee_external_id": "43"}),
    Case("POST /customers/merge", "body.source_user_id", 0, "greater_than_equal", "other",
         base={"target_user_id": "buyer"}),
    Case("GET /balance", "query.product_key", " ", "invalid_product_key", K50, base=U),
    Case("GET /balance", "query.product_key", "K" * 51, "string_too_long", "CREDITS", base=U),
    Case("GET /wallet", "query.external_id", " ", "value_error", "42"),
    Case("GET /user-products", "query.product_key", "C\x00", "value_error", "", base=U),
    Case("GET /wallet/transactions", "query.limit", 0, "greater_than_equal", 1000, base=U),
    Case("GET /wallet/transactions", "query.limit", 1001, "less_than_equal", 1, base=U),
    Case("GET /wallet/transactions", "query.cursor", "c\x00", "value_error", "", base=U),
    Case("GET /catalog/{sku}", "path.sku", " ", "offer_not_found", "pack"),
    Case("GET /reports/dashboard", "query.start", "2026-1-1", "invalid_date", "2026-01-01"),
    Case("GET /reports/dashboard", "query.start", "2026-01-01\x00", "invalid_date", " "),
    Case("GET /reports/dashboard", "query.bot", " bot", "invalid_bot_id", "b" * 64),
    Case("GET /reports/dashboard", "query.bot", "b" * 65, "invalid_bot_id", "my_bot"),
    Case("GET /reports/dashboard", "query.bot", "b\x00t", "invalid_bot_id", "-"),
]


def stable_code(body: Any) -> str:
    """The machine-readable reason of a refusal: the envelope's ``data.error`` or the first
    validation error's ``type``."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        return str(body["data"].get("error"))
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        return str(body["detail"][0]["type"])
    raise AssertionError(f"no stable code in {body!r}")


def send(client: Client, world: World, case: Case, value: Any) -> Any:
    """Send ``case``'s request with ``value`` in its field; return the response."""
    method, template = case.operation.split(" ", 1)
    where, name = case.name.split(".", 1)
    base = dict(case.base)
    for key, ref in list(base.items()):
        if key.endswith("user_id"):
            base[key] = world.user_id if ref == "buyer" else ref
    if value == "buyer":
        value = world.user_id
    if where == "body":
        base[name] = value
    if where == "query":
        base[name] = value
    path_values = dict(case.path)
    if where == "path":
        path_values[name] = value
    url = template
    for key, ref in path_values.items():
        if ref in ("pending", "paid"):
            ref = world.order(paid=ref == "paid")
        url = url.replace("{" + key + "}", str(ref))
    if method == "GET":
        return client.get(MOUNT + url, base, **AUTH)
    if base.get("source_user_id") == "other":
        from django.contrib.auth import get_user_model

        base["source_user_id"] = get_user_model().objects.create(username="other").pk
    return client.post(MOUNT + url, json.dumps(base), content_type="application/json", **AUTH)


def field_schema(doc: dict[str, Any], case: Case) -> dict[str, Any]:
    return inputs(doc)[(case.operation, case.name)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.operation} {c.name} {c.code}" for c in CASES])
def test_refused_by_the_schema_means_refused_by_the_server(client, openapi, world, case):
    schema = field_schema(openapi, case)
    # placeholders stand for ids made per request; any valid id stands for them here
    good = 1 if case.good in ("buyer", "other", "pending", "paid") else case.good
    assert not conforms(case.bad, schema), "the schema must forbid the refused value"
    assert conforms(good, schema), "the schema must allow the accepted value"

    refused = send(client, world, case, case.bad)
    assert 400 <= refused.status_code < 500, refused.content
    assert stable_code(refused.json()) == case.code, refused.content

    accepted = send(client, world, case, case.good)
    assert 200 <= accepted.status_code < 300, accepted.content


def test_every_constrained_field_has_a_server_case():
    """Each field of :data:`CONSTRAINTS` is exercised against the server by :data:`CASES`."""
    exercised = {(case.operation, case.name) for case in CASES}
    missing = [(op, name) for op, name, _, _ in CONSTRAINTS if (op, name) not in exercised]
    assert missing == []
