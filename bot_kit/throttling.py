"""Per-user throttling backends for gated commands: in-process memory or Redis.

A backend answers one question, ``await backend.hit(key, limit=..., window=...)``: ``0.0``
when the call is allowed, otherwise the number of seconds until the caller may retry. Both
backends use a fixed window (``limit`` hits per ``window`` seconds).

Throttling is never on the money path: :func:`allowed` gives a backend ``Throttle.timeout``
seconds, and a backend that fails or is slow (Redis down) lets the update through — it fails
open, with one warning when the outage starts and one line when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot_kit.resilience import Outage

if TYPE_CHECKING:
    from bot_kit.config import Throttle

logger = logging.getLogger("bot_kit.throttling")
_OUTAGES: weakref.WeakKeyDictionary[Any, Outage] = weakref.WeakKeyDictionary()


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


def _outage(backend: Any) -> Outage:
    outage = _OUTAGES.get(backend)
    if outage is None:
        outage = _OUTAGES[backend] = Outage(
            f"throttle backend {type(backend).__name__} (failing open)", logger)
    return outage


async def allowed(throttle: Throttle, key: str) -> float:
    """``throttle.backend.hit`` within ``throttle.timeout`` seconds; ``0.0`` when it fails."""
    backend = throttle.backend
    if backend is None:
        return 0.0
    try:
        async with asyncio.timeout(throttle.timeout):
            wait = await backend.hit(key, limit=throttle.limit, window=throttle.window)
    except Exception as exc:
        _outage(backend).failed(exc)
        return 0.0
    _outage(backend).recovered()
    return wait


__all__ = ["MemoryThrottle", "RedisThrottle", "ThrottleBackend", "allowed"]
