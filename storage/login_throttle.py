"""Failed-login counters in Redis: one fixed window per key, counted atomically.

Keys are hashed, so Redis never holds the submitted emails or client addresses themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis.asyncio as aioredis

from storage._translate import translated
from storage.ports import ThrottleCount

_PREFIX = "shoal:login:"


def _key(key: str) -> str:
    return _PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


class RedisLoginThrottle:
    """``INCR`` + ``PEXPIRE NX`` + ``PTTL`` per key in one transaction (one round trip)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def hit(self, keys: Sequence[str], window_s: int) -> list[ThrottleCount]:
        """Count one more attempt against each key; the first one starts its window.

        Raises:
            StorageUnavailableError: Redis could not answer.
        """
        window_ms = window_s * 1000
        async with translated(), self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                name = _key(key)
                pipe.incr(name)
                pipe.pexpire(name, window_ms, nx=True)
                pipe.pttl(name)
            replies = await pipe.execute()
        return [
            ThrottleCount(int(replies[i]), max(0, int(replies[i + 2])))
            for i in range(0, len(replies), 3)
        ]

    async def forgive(self, key: str) -> None:
        """Take back one attempt of ``key``, never below zero."""
        name = _key(key)
        async with translated():
            if int(await self._redis.decr(name)) < 0:
                await self._redis.delete(name)

    async def clear(self, key: str) -> None:
        """Forget every attempt of ``key``."""
        async with translated():
            await self._redis.delete(_key(key))
