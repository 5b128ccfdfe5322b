"""Helpers for bot tests (import them; fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from bot_kit.testing import FakeSession


def texts_sent(session: FakeSession, method: str = "sendMessage") -> list[str]:
    """The ``text`` of every call of ``method``, oldest first."""
    return [str(call.params.get("text", "")) for call in session.calls_to(method)]


def buttons_sent(session: FakeSession) -> list[tuple[str, str]]:
    """``(text, callback_data)`` of every inline button sent with ``sendMessage``."""
    found = []
    for call in session.calls_to("sendMessage"):
        markup = call.params.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            found.extend((b["text"], b.get("callback_data", "")) for b in row)
    return found


class WorkerQueries:
    """Counts the SQL run by ``sync_to_async``'s worker thread (where the services run)."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self._context: Any = None

    def _wrapper(self, execute: Callable[..., Any], sql: str, params: Any, many: bool,
                 context: Any) -> Any:
        self.sql.append(sql)
        return execute(sql, params, many, context)

    async def __aenter__(self) -> WorkerQueries:
        def enter() -> None:
            self._context = connection.execute_wrapper(self._wrapper)
            self._context.__enter__()

        await sync_to_async(enter)()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await sync_to_async(self._context.__exit__)(None, None, None)
