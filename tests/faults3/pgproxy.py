"""A TCP proxy in front of PostgreSQL that can lose one reply.

``arm(marker)``: the next client message that contains ``marker`` is forwarded, and the
server's answer to it is never delivered: both sides of that connection are closed instead.
The server has executed (and, in autocommit, committed) the statement; the client sees a broken
connection — the "lost answer" of a network failure or a failover at the worst moment.
"""

from __future__ import annotations

import asyncio
import contextlib


class LossyProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.marker: bytes | None = None
        self.times = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, marker: str, times: int = 1) -> None:
        """Lose the answers to the next ``times`` client messages that contain ``marker``."""
        self.marker, self.times = marker.encode(), times

    async def __aenter__(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writers = [client_w]
        pumps: list[asyncio.Task[None]] = []
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
            writers.append(server_w)
            state = {"drop": False}

            async def upstream() -> None:
                while data := await client_r.read(65536):
                    if self.marker is not None and self.marker in data:
                        self.times -= 1
                        if self.times <= 0:
                            self.marker = None
                        state["drop"] = True
                    server_w.write(data)
                    await server_w.drain()

            async def downstream() -> None:
                while data := await server_r.read(65536):
                    if state["drop"]:
                        self.dropped += 1
                        return
                    client_w.write(data)
                    await client_w.drain()

            pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in writers:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            self._tasks.discard(task)
