"""Structured logs: JSON lines with the customer, order and charge ids as fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.test import Client

from billable.logs import JsonFormatter, LogContextFilter, log_context, log_fields
from billable.services.api_keys import create_api_key


@pytest.fixture
def json_lines() -> Iterator[StringIO]:
    """The ``billable`` and ``bot_kit`` loggers write JSON lines into a buffer (as a host
    configures them through ``LOGGING``)."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    loggers = [logging.getLogger(name) for name in ("billable", "bot_kit")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def entries(stream: StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_fields_from_extra_and_context_become_json_keys(json_lines: StringIO) -> None:
    logger = logging.getLogger("billable.test")
    with log_context(customer_id=7, order_id=None):
        logger.warning("charge %s refused", "c-1", extra=log_fields(charge_id="c-1",
                                                                    order_id=None))
        with log_context(order_id=3):
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("order failed")
    logger.info("outside")

    first, second, third = entries(json_lines)
    assert {k: first[k] for k in ("level", "logger", "message", "customer_id", "charge_id")} == {
        "level": "WARNING", "logger": "billable.test", "message": "charge c-1 refused",
        "customer_id": 7, "charge_id": "c-1"}
    assert "order_id" not in first and first["time"].endswith("+00:00")
    assert (second["customer_id"], second["order_id"]) == (7, 3)
    assert "ValueError: boom" in second["exc_info"]
    assert "customer_id" not in third


def test_plain_formats_may_name_the_id_fields() -> None:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s customer=%(customer_id)s "
                                           "order=%(order_id)s charge=%(charge_id)s"))
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger("billable.test.plain")
    logger.addHandler(handler)
    try:
        with log_context(customer_id=5):
            logger.warning("hello")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "hello customer=5 order=None charge=None\n"


@pytest.mark.django_db(transaction=True)
def test_a_paid_order_logs_its_ids_and_the_api_key(json_lines: StringIO, make_product: Any,
                                                    make_offer: Any) -> None:
    credits = make_product("CREDITS")
    make_offer("PACK", items=[(credits, 10)], price=Decimal("2.00"))
    _, token = create_api_key("shop backend", ["orders:write", "orders:confirm"])
    client = Client(headers={"Authorization": f"Bearer {token}"})
    order = client.post("/api/v1/billing/orders", data={
        "external_id": "u1", "items": [{"sku": "PACK", "quantity": 1}]},
        content_type="application/json").json()

    client.post(f"/api/v1/billing/orders/{order['id']}/confirm", data={"payment_id": "pi_1"},
                content_type="application/json")

    [paid] = [e for e in entries(json_lines) if e.get("event") == "order_confirmed"]
    assert paid["order_id"] == order["id"] and paid["customer_id"] == order["user_id"]
    assert paid["charge_id"] == "pi_1" and paid["api_key"] == "shop backend"
    assert paid["logger"] == "billable.events"
