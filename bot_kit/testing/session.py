"""``FakeSession``: an aiogram session that talks to an in-memory fake Bot API.

    session = FakeSession()
    bot = Bot("42:TEST", session=session)
    await dp.feed_update(bot, updates.command("balance"))
    assert session.calls_to("sendMessage")[0].params["text"].startswith("Your balance")
    session.fail(method="refundStarPayment", status=429, retry_after=1)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType

from bot_kit.testing.api import FakeBotAPI, RecordedCall, Responder


class FakeSession(BaseSession):
    """Records every call, answers like Telegram, raises aiogram's real API exceptions."""

    def __init__(self, api: FakeBotAPI | None = None, *, strict: bool = True,
                 **kwargs: Any) -> None:
        """``strict=False`` (for a new fake API only): accept calls Telegram would refuse."""
        super().__init__(**kwargs)
        self.fake_api = api if api is not None else FakeBotAPI(strict=strict)

    @property
    def refused(self) -> list[tuple[str, str]]:
        """Calls the strict fake refused as Telegram would: ``(method, description)``."""
        return self.fake_api.refused

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call made through this session, oldest first."""
        return self.fake_api.calls

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The calls of one method (e.g. ``"sendMessage"``)."""
        return self.fake_api.calls_to(method)

    def fail(self, method: str | None = None, *, status: int = 400,
             description: str | None = None, retry_after: int | None = None,
             times: int = 1) -> None:
        """Queue failures for ``method`` (see ``FakeBotAPI.fail``)."""
        self.fake_api.fail(method, status=status, description=description,
                      retry_after=retry_after, times=times)

    def respond(self, method: str, responder: Responder) -> None:
        """Register a custom responder for ``method``."""
        self.fake_api.respond(method, responder)

    def slow(self, method: str, seconds: float) -> None:
        """Hold back the answers to ``method`` (see ``FakeBotAPI.slow``)."""
        self.fake_api.slow(method, seconds)

    def params_of(self, bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any]:
        """The JSON-like parameters aiogram would send (defaults resolved, ``None`` dropped)."""
        files: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                params[key] = prepared
        return params

    async def make_request(self, bot: Bot, method: TelegramMethod[TelegramType],
                           timeout: int | None = None) -> TelegramType:  # noqa: ASYNC109
        name = method.__api_method__
        status, body = self.fake_api.handle(name, self.params_of(bot, method))
        if self.fake_api.delay_of(name):
            await asyncio.sleep(self.fake_api.delay_of(name))
        response = self.check_response(bot=bot, method=method, status_code=status,
                                       content=json.dumps(body))
        return response.result  # type: ignore[return-value]

    async def stream_content(self, url: str, headers: dict[str, Any] | None = None,
                             timeout: int = 30, chunk_size: int = 65536,  # noqa: ASYNC109
                             raise_for_status: bool = True) -> AsyncGenerator[bytes, None]:
        yield b""

    async def close(self) -> None:
        """Nothing to close: no network is involved."""


def make_bot(session: FakeSession | None = None, *, token: str = "42:TEST",
             strict: bool = True) -> Bot:
    """A ``Bot`` wired to a fake session (bot id = the token's numeric part; ``strict``: see
    ``FakeBotAPI``, used only when no session is given)."""
    bot_id = int(token.split(":", 1)[0])
    session = session if session is not None else FakeSession(
        FakeBotAPI(bot_id=bot_id, strict=strict))
    return Bot(token, session=session)


__all__ = ["FakeSession", "make_bot"]
