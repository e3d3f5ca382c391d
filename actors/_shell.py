"""What every actor shell does around its service: build it once, measure each call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from storage.telemetry import ACTOR_CALLS, ACTOR_LATENCY

S = TypeVar("S")
T = TypeVar("T")


class LazyService(Generic[S]):
    """A service built on first use, inside the actor's event loop, exactly once.

    Ray runs ``__init__`` outside the actor's loop, so loading rows or keys happens here,
    on the first call (also the first call after Ray restarted the actor).
    """

    def __init__(self, build: Callable[[], Awaitable[S]]) -> None:
        self._build = build
        self._service: S | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> S:
        """The service, building it if no call has yet."""
        if self._service is not None:
            return self._service
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._service is None:
                self._service = await self._build()
        return self._service


async def measured(kind: str, method: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``, counting it by outcome and timing it, under the actor's metric labels."""
    started, outcome = time.perf_counter(), "error"
    try:
        result = await call()
        outcome = "ok"
        return result
    finally:
        ACTOR_CALLS.labels(kind, method, outcome).inc()
        ACTOR_LATENCY.labels(kind, method).observe(time.perf_counter() - started)
