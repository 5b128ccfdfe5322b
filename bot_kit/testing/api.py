"""The fake Bot API shared by ``FakeSession`` and ``FakeBotAPIServer``.

It records every call (method name + JSON-like params), answers with realistic results for the
methods a billing bot uses, and replays injected failures (queued per method) exactly like
Telegram reports them, so aiogram raises its real exceptions (``TelegramRetryAfter``,
``TelegramServerError``, ``TelegramBadRequest`` …).

Strict by default: a call that breaks one of the Bot API's documented rules (a message over 4096
characters, callback data over 64 bytes, a second answer to one callback query, a Stars invoice
with two prices …, see ``bot_kit.testing.rules``) is refused with ``400`` and Telegram's
description, as Telegram refuses it. ``FakeBotAPI(strict=False)`` accepts anything, for a test
that deliberately sends what Telegram would refuse.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot_kit.testing.errors import FakeAPIError
from bot_kit.testing.results import DEFAULT_RESULTS, bot_user, default_result
from bot_kit.testing.rules import RuleState, refusal

#: ``responder(params) -> result`` for one method; ``FakeAPIError`` may be raised.
Responder = Callable[[dict[str, Any]], Any]

@dataclass(frozen=True)
class RecordedCall:
    """One Bot API call as the fake saw it."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.time)


class FakeBotAPI:
    """In-memory Bot API: ``handle(method, params) -> (http status, JSON body)``."""

    def __init__(self, *, bot_id: int = 42, bot_username: str = "test_bot",
                 strict: bool = True) -> None:
        self.bot_id = bot_id
        #: Refuse calls that break the Bot API's rules, as Telegram does (see the module doc).
        self.strict = strict
        self.rule_state = RuleState()
        self.bot_username = bot_username
        self.calls: list[RecordedCall] = []
        self.star_transactions: list[dict[str, Any]] = []
        self.refused: list[tuple[str, str]] = []
        self._failures: dict[str | None, deque[FakeAPIError]] = {}
        self._responders: dict[str, Responder] = {}
        self.delays: dict[str, float] = {}
        self._message_ids = itertools.count(1)
        self._serials = itertools.count(1)

    # -- configuration -------------------------------------------------------------------------

    def fail(self, method: str | None = None, *, status: int = 400,
             description: str | None = None, retry_after: int | None = None,
             times: int = 1) -> None:
        """Queue ``times`` failures for ``method`` (``None``: the next call of any method).

        ``status=429, retry_after=1`` → ``TelegramRetryAfter``; ``status=500`` →
        ``TelegramServerError``; ``status=400, description="Bad Request: …"`` →
        ``TelegramBadRequest``. Failures of one method are served in the order queued.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        queue = self._failures.setdefault(method, deque())
        for _ in range(times):
            queue.append(FakeAPIError(status, description, retry_after=retry_after))

    def slow(self, method: str, seconds: float) -> None:
        """Answer ``method`` only after ``seconds`` (the call is recorded when it arrives)."""
        self.delays[method] = seconds

    def delay_of(self, method: str) -> float:
        """Seconds the answer to ``method`` is held back (0 unless ``slow`` was called)."""
        return self.delays.get(method, 0.0)

    def respond(self, method: str, responder: Responder) -> None:
        """Answer ``method`` with ``responder(params)`` instead of the default result."""
        self._responders[method] = responder

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The recorded calls of one method, oldest first."""
        return [call for call in self.calls if call.method == method]

    def clear(self) -> None:
        """Forget recorded calls (failures and responders stay)."""
        self.calls.clear()

    # -- serving -------------------------------------------------------------------------------

    def handle(self, method: str, params: dict[str, Any], *,
               record: bool = True) -> tuple[int, dict[str, Any]]:
        """Record the call and produce Telegram's answer as ``(status, body)``."""
        if record:
            self.calls.append(RecordedCall(method=method, params=params))
        try:
            failure = self._next_failure(method)
            if failure is not None:
                raise failure
            refused = refusal(self.rule_state, method, params) if self.strict else None
            if refused is not None:
                self.refused.append((method, refused))
                raise FakeAPIError(400, refused)
            return 200, {"ok": True, "result": self.result(method, params)}
        except FakeAPIError as error:
            return error.status, error.body()

    def result(self, method: str, params: dict[str, Any]) -> Any:
        """The successful result of ``method`` (responder, built-in, or by return type)."""
        responder = self._responders.get(method)
        if responder is not None:
            return responder(params)
        if method == "getMe":
            return bot_user(self.bot_id, self.bot_username)
        if method == "getStarTransactions":
            offset = int(params.get("offset") or 0)
            limit = int(params.get("limit") or 100)
            return {"transactions": self.star_transactions[offset:offset + limit]}
        builder = DEFAULT_RESULTS.get(method)
        if builder is not None:
            return builder(self, params)
        return default_result(self, method, params)

    def next_message_id(self) -> int:
        return next(self._message_ids)

    def next_serial(self) -> int:
        return next(self._serials)

    def _next_failure(self, method: str) -> FakeAPIError | None:
        for name in (method, None):
            queue = self._failures.get(name)
            if queue:
                return queue.popleft()
        return None


__all__ = ["FakeAPIError", "FakeBotAPI", "RecordedCall", "Responder"]
