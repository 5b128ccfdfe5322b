"""Realistic successful results of Bot API methods for the fake API."""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import aiogram.methods as methods
from aiogram.types import Message

from bot_kit.testing.errors import FakeAPIError

if TYPE_CHECKING:
    from bot_kit.testing.api import FakeBotAPI

ResultBuilder = Callable[["FakeBotAPI", dict[str, Any]], Any]


def bot_user(bot_id: int, username: str) -> dict[str, Any]:
    """The bot itself as ``getMe`` returns it."""
    return {"id": bot_id, "is_bot": True, "first_name": "Test Bot", "username": username,
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": True}


def _chat(chat_id: Any) -> dict[str, Any]:
    try:
        numeric = int(chat_id)
    except (TypeError, ValueError):
        return {"id": -1001000000000, "type": "channel", "title": str(chat_id)}
    if numeric > 0:
        return {"id": numeric, "type": "private", "first_name": "User"}
    return {"id": numeric, "type": "supergroup", "title": "Group"}


def message(api: FakeBotAPI, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A message sent by the bot into ``params["chat_id"]``."""
    body: dict[str, Any] = {
        "message_id": params.get("message_id") or api.next_message_id(),
        "date": int(time.time()),
        "chat": _chat(params.get("chat_id")),
        "from": bot_user(api.bot_id, api.bot_username),
    }
    for key in ("text", "caption", "reply_markup"):
        if params.get(key) is not None:
            body[key] = params[key]
    body.update(extra)
    return body


def _edited(api: FakeBotAPI, params: dict[str, Any]) -> Any:
    if params.get("inline_message_id"):
        return True
    return message(api, params, edit_date=int(time.time()))


def _invoice(api: FakeBotAPI, params: dict[str, Any]) -> dict[str, Any]:
    total = sum(int(p.get("amount", 0)) for p in params.get("prices") or [])
    invoice = {"title": params.get("title", ""), "description": params.get("description", ""),
               "start_parameter": params.get("start_parameter", ""),
               "currency": params.get("currency", "XTR"), "total_amount": total}
    return message(api, params, invoice=invoice)


def _photo(api: FakeBotAPI, params: dict[str, Any]) -> dict[str, Any]:
    serial = api.next_serial()
    photo = [{"file_id": f"fake-photo-{serial}", "file_unique_id": f"fp{serial}",
              "width": 640, "height": 480}]
    return message(api, params, photo=photo)


def _invoice_link(api: FakeBotAPI, params: dict[str, Any]) -> str:
    return f"https://t.me/$fake_invoice_{api.next_serial()}"


DEFAULT_RESULTS: dict[str, ResultBuilder] = {
    "sendMessage": lambda api, params: message(api, params),
    "editMessageText": _edited,
    "editMessageReplyMarkup": _edited,
    "editMessageCaption": _edited,
    "sendInvoice": _invoice,
    "sendPhoto": _photo,
    "createInvoiceLink": _invoice_link,
    "getUpdates": lambda api, params: [],
    "getMyCommands": lambda api, params: [],
    "getWebhookInfo": lambda api, params: {"url": "", "has_custom_certificate": False,
                                           "pending_update_count": 0},
    "getChat": lambda api, params: {**_chat(params.get("chat_id")), "accent_color_id": 0,
                                    "max_reaction_count": 11},
}


@cache
def _methods() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for value in vars(methods).values():
        name = getattr(value, "__api_method__", None)
        if inspect.isclass(value) and isinstance(name, str):
            found[name] = value
    return found


def default_result(api: FakeBotAPI, method: str, params: dict[str, Any]) -> Any:
    """A result shaped by the method's return type: ``True``, a message, or an empty list."""
    cls = _methods().get(method)
    if cls is None:
        raise FakeAPIError(404, "Not Found: method not found")
    returning = cls.__returning__
    if returning is bool:
        return True
    if returning is Message:
        return message(api, params)
    if typing.get_origin(returning) is list:
        return []
    raise FakeAPIError(400, f"Bad Request: the fake Bot API has no default result for "
                            f"{method}; register one with respond()")


__all__ = ["DEFAULT_RESULTS", "bot_user", "default_result", "message"]
