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

    def __init__(self, api: FakeBotAPI | None = None, *, max_long_poll: float = 0.5,
                 strict: bool = True) -> None:
        self.api = api if api is not None else FakeBotAPI(strict=strict)
        self.max_long_poll = max_long_poll
        self.url = ""
        self._pending: list[dict[str, Any]] = []
        self._tick = asyncio.Event()  # replaced (and set) on every change: a broadcast
        self._runner: web.AppRunner | None = None
        self._closing = False
        #: Every update handed out by ``getUpdates`` (redeliveries included), oldest first.
        self.delivered: list[int] = []
        #: The highest ``offset`` a ``getUpdates`` confirmed (updates below it are gone).
        self.confirmed_offset = 0

    @property
    def calls(self) -> list[RecordedCall]:
        """Every recorded call except ``getUpdates``, oldest first."""
        return self.api.calls

    def put_update(self, update: Update | dict[str, Any]) -> None:
        """Queue an update for the next ``getUpdates``."""
        data = update_to_json(update) if isinstance(update, Update) else dict(update)
        self._pending.append(data)
        self._changed()

    async def wait_for_call(self, method: str, timeout: float = 5.0, *,  # noqa: ASYNC109
                            count: int = 1) -> RecordedCall:
        """Wait until ``method`` was called ``count`` times; return the latest such call."""
        async def reached() -> RecordedCall:
            while True:
                tick = self._tick
                if len(self.api.calls_to(method)) >= count:
                    return self.api.calls_to(method)[-1]
                await tick.wait()

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
        self._changed()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPIServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _changed(self) -> None:
        """Wake every waiter (lock-free: the current event is set and replaced)."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        if method == "getUpdates":
            result = await self._get_updates(params)
            return web.json_response({"ok": True, "result": result})
        status, body = self.api.handle(method, params)
        self._changed()
        if self.api.delay_of(method):
            await asyncio.sleep(self.api.delay_of(method))
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
            self.confirmed_offset = max(self.confirmed_offset, offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending and not self._closing:
            tick, left = self._tick, deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(tick.wait(), left)
            except TimeoutError:
                break
        batch = self._pending[:limit]
        self.delivered.extend(u["update_id"] for u in batch)
        if batch:
            self._changed()
        return batch

    async def wait_delivered(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until ``getUpdates`` has handed out at least ``count`` updates in all."""
        async def reached() -> None:
            while True:
                tick = self._tick
                if len(self.delivered) >= count:
                    return
                await tick.wait()

        await asyncio.wait_for(reached(), timeout)


__all__ = ["FakeBotAPIServer", "decode_form"]
