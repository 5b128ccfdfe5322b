"""Helpers of the peer acceptance suite (``test_peer_*.py``).

The peer suite is written from the contract (SPEC section 8, docs/bot_kit.md, docs/payments.md)
only: it drives a host's ``Dispatcher`` through ``bot_kit.testing`` like a host developer would,
and reads the database only through billable's public models.
"""

from __future__ import annotations

import re
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from bot_kit.testing import FakeSession

SECRET = "peer-secret-0123456789abcdef"
CYRILLIC = re.compile("[а-яА-ЯёЁ]")
LEAK = re.compile(r"Traceback|Error\b|Exception|File \"|line \d+|NoneType|KeyError|ValueError")


def texts(session: FakeSession, method: str = "sendMessage") -> list[str]:
    """The ``text`` of every call of ``method``, oldest first."""
    return [str(call.params.get("text", "")) for call in session.calls_to(method)]


def everything_said(session: FakeSession) -> list[str]:
    """Every user-visible string the bot sent (texts, alerts, pre-checkout errors, titles)."""
    said = []
    for call in session.calls:
        for key in ("text", "error_message", "title", "description", "caption"):
            if call.params.get(key):
                said.append(str(call.params[key]))
    return said


def assert_no_leak(session: FakeSession) -> None:
    """No traceback or raw exception text ever reaches a user."""
    for text in everything_said(session):
        assert not LEAK.search(text), text


def buttons(session: FakeSession, method: str = "sendMessage") -> list[tuple[str, str]]:
    """``(text, callback_data)`` of every inline button sent with ``method``."""
    found = []
    for call in session.calls_to(method):
        markup = call.params.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            found.extend((b["text"], b.get("callback_data", "")) for b in row)
    return found


def precheckout_answers(session: FakeSession) -> list[dict[str, Any]]:
    return [call.params for call in session.calls_to("answerPreCheckoutQuery")]


@sync_to_async
def billing_user_of(telegram_id: int) -> Any:
    from billable.models import ExternalIdentity

    return ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")


@sync_to_async
def identity_of(telegram_id: int) -> Any:
    from billable.models import ExternalIdentity

    return ExternalIdentity.objects.filter(provider="telegram",
                                           external_id=str(telegram_id)).first()


@sync_to_async
def remaining(telegram_id: int, product_key: str) -> int:
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    if user is None:
        return 0
    return int(TransactionService.get_balance(user.pk, product_key))


@sync_to_async
def give(telegram_id: int, sku: str) -> None:
    """Grant ``sku`` to the billing account of ``telegram_id`` (created if needed)."""
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    identity, _ = ExternalIdentity.objects.get_or_create(provider="telegram",
                                                         external_id=str(telegram_id))
    if identity.user_id is None:
        identity.user = get_user_model().objects.create(username=f"tg{telegram_id}")
        identity.save()
    TransactionService.grant_offer(identity.user_id, sku, source="manual_grant")


@sync_to_async
def orders_of(telegram_id: int) -> list[Any]:
    from billable.models import ExternalIdentity, Order

    user = ExternalIdentity.get_user_by_identity(str(telegram_id), provider="telegram")
    return list(Order.objects.filter(user=user).order_by("pk"))


@sync_to_async
def count(model_path: str, **lookup: Any) -> int:
    from django.apps import apps

    model = apps.get_model(model_path)
    return int(model.objects.filter(**lookup).count())
