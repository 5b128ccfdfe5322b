"""Schema-driven fuzzing of the mounted API with schemathesis (in-process, WSGI).

Every operation of the app's own OpenAPI document is called with generated requests; no
response may be a 5xx, use an undocumented status or content type, or violate its documented
schema. Hypothesis is derandomized, so the run is deterministic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Examples per operation and generation mode (keeps the whole run well under 90 s).
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 8}


@pytest.fixture
def keep_connection() -> Iterator[None]:
    """Like Django's test client: requests must not close the test's (rolled-back) connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def billing_schema(db: None, keep_connection: None, make_user: Any, make_product: Any,
                   make_offer: Any) -> Any:
    """The OpenAPI document served by the app, with a little data so lookups can succeed."""
    from django.core.wsgi import get_wsgi_application

    from billable.services import TransactionService

    user = make_user()
    tokens = make_product("TOKENS", name="Tokens")
    make_product("INTERNAL", name="Credits", is_currency=True)
    make_offer("PACK", items=[(tokens, 10)], price=Decimal("5.00"))
    make_offer("TRIAL", items=[(tokens, 1)])
    make_offer("SWAP", items=[(tokens, 3)], price=Decimal("2"), currency="INTERNAL")
    TransactionService.grant_offer(user.pk, "PACK")
    return schemathesis.openapi.from_wsgi("/api/v1/billing/openapi.json",
                                          get_wsgi_application(), headers=AUTH)


def _fuzz(operation: Any, mode: GenerationMode, seen: Counter[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode], derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        seen[f"{operation.label} {response.status_code // 100}xx"] += 1

    run()


def test_every_operation_conforms_to_its_schema(billing_schema: Any) -> None:
    operations = [result.ok() for result in billing_schema.get_all_operations()]
    assert len(operations) == 26
    seen: Counter[str] = Counter()
    for operation in operations:
        for mode in EXAMPLES:
            _fuzz(operation, mode, seen)
    assert not [label for label in seen if label.endswith("5xx")]
    succeeded = {label.rsplit(" ", 1)[0] for label in seen if label.endswith("2xx")}
    assert len(succeeded) >= 4, seen
