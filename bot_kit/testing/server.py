"""A loopback fake Bot API HTTP server for end-to-end runs with real polling.

    async with FakeBotAPIServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
        server.put_update(updates.command("balance"))
        call = await server.wait_for_call("sendMessage", timeout=5)
        await dp.stop_polling()

``getUpdates`` long-polls a queue fed with ``put_update``; every other method is recorded in
``calls`` and answered by the same ``FakeBotAPI`` as ``FakeSession`` (failures and custom
responders included). The server binds to 127.0.0.1 on a free port only.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

from aiogram.types import Update
from aiohttp import web

from bot_kit.testing.api import FakeBotAPI, RecordedCall
from bot_kit.testing.updates import update_to_json

#: Form fields that are free text and must not be JSON-decoded ("42" stays a string).
TEXT_FIELDS = frozenset({"text", "caption", "title", "description", "payload", "query",
                         "error_message", "start_parameter", "provider_token", "url",
                         "secret_token", "telegram_payment_charge_id", "invoice_payload",
                         "callback_query_id", "pre_checkout_query_id", "inline_query_id",
                         "parse_mode", "currency", "label", "name"})


def decode_form(form: dict[str, str]) -> dict[str, Any]:
    """Form fields as aiogram sent them → JSON-like params (same shape as ``FakeSession``)."""
    params: dict[str, Any] = {}
    for key, raw in form.items():
        if key in TEXT_FIELDS:
            params[key] = raw
            continue
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


class FakeBotAPIServer:
    """An aiohttp server on 127.0.0.1 speaking the Bot API (``/bot<token>/<method>``)."""

    def __init__(self, api: FakeBotAPI | None = None, *, max_long_poll: float = 0.5) -> None:
        self.api = api if api is not None else FakeBotAPI()
        self.max_long_poll = max_long_poll
        self.url = ""
        self._pending: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._closing = False

    @property
    def calls(self) -> list[RecordedCall]:
        """Every recorded call except ``getUpdates``, oldest first."""
        return self.api.calls

    def put_update(self, update: Update | dict[str, Any]) -> None:
        """Queue an update for the next ``getUpdates``."""
        data = update_to_json(update) if isinstance(update, Update) else dict(update)
        self._pending.append(data)
        asyncio.get_running_loop().create_task(self._notify())

    async def wait_for_call(self, method: str, timeout: float = 5.0, *,  # noqa: ASYNC109
                            count: int = 1) -> RecordedCall:
        """Wait until ``method`` was called ``count`` times; return the latest such call."""
        async def reached() -> RecordedCall:
            async with self._changed:
                while len(self.api.calls_to(method)) < count:
                    await self._changed.wait()
            return self.api.calls_to(method)[-1]

        return await asyncio.wait_for(reached(), timeout)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing = True
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPIServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        if method == "getUpdates":
            result = await self._get_updates(params)
            return web.json_response({"ok": True, "result": result})
        status, body = self.api.handle(method, params)
        await self._notify()
        return web.json_response(body, status=status)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = await request.json()
            return dict(data) if isinstance(data, dict) else {}
        form = await request.post()
        return decode_form({k: v for k, v in form.items() if isinstance(v, str)})

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = min(float(params.get("timeout") or 0), self.max_long_poll)
        if offset:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        if not self._pending and timeout > 0 and not self._closing:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._pending) or self._closing),
                        timeout)
                except TimeoutError:
                    pass
        return self._pending[:limit]


__all__ = ["FakeBotAPIServer", "decode_form"]
