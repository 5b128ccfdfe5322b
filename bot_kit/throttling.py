"""Per-user throttling backends for gated commands: in-process memory or Redis.

A backend answers one question, ``await backend.hit(key, limit=..., window=...)``: ``0.0``
when the call is allowed, otherwise the number of seconds until the caller may retry. Both
backends use a fixed window (``limit`` hits per ``window`` seconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ThrottleBackend(Protocol):
    """Anything with ``async hit(key, *, limit, window) -> float`` (seconds to wait, 0 = ok)."""

    async def hit(self, key: str, *, limit: int, window: float) -> float: ...


class MemoryThrottle:
    """Fixed-window counters in this process (bounded: the oldest keys are dropped)."""

    def __init__(self, max_keys: int = 100_000, clock: Any = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        now = self._clock()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= window:
                started, count = now, 0
            count += 1
            self._windows[key] = (started, count)
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        if count <= limit:
            return 0.0
        return max(window - (now - started), 0.001)


class RedisThrottle:
    """Fixed-window counters in Redis (shared by every bot process); redis-py asyncio client.

    ``prefix`` namespaces the keys, e.g. one prefix per bot.
    """

    def __init__(self, redis: Any, *, prefix: str = "bot_kit:throttle:") -> None:
        self.redis = redis
        self.prefix = prefix

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        name = f"{self.prefix}{key}"
        window_ms = max(math.ceil(window * 1000), 1)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(name, 0, px=window_ms, nx=True)
            pipe.incr(name)
            pipe.pttl(name)
            _, count, ttl_ms = await pipe.execute()
        if int(count) <= limit:
            return 0.0
        return max(int(ttl_ms), 1) / 1000.0


__all__ = ["MemoryThrottle", "RedisThrottle", "ThrottleBackend"]
