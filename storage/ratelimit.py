"""GCRA rate limiting: one atomic Redis script (Redis server time), and the same rule in Python.

The script also reads whatever keys the caller adds (the session and user keys of
:mod:`storage.session_cache`, and the route's cache entry), so an authenticated cached read
costs one round trip for its rate limit, its session check and its data.
The Python twin serves as a per-replica limiter while Redis cannot answer. No library
offers a GCRA step fused with our session read over redis-py, hence this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from storage._translate import redis_bytes, translated

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + period - burst * period
local allowed, retry_after = 1, 0
if now < allow_at then
  allowed, retry_after = 0, allow_at - now
else
  tat = tat + period
  redis.call('SET', KEYS[1], tat, 'PX', tat - now)
end
local reply = {allowed, math.max(0, math.floor((now - (tat - burst * period)) / period)),
               retry_after, tat - now}
for i = 2, #KEYS do
  reply[#reply + 1] = redis.call('GET', KEYS[i])
end
return reply
"""


@dataclass(frozen=True, slots=True)
class RateSpec:
    """A sustained rate with a burst: ``burst`` requests at once, then one per ``period_ms``."""

    period_ms: int
    burst: int

    @classmethod
    def per_second(cls, rate: float, burst: int) -> RateSpec:
        """``rate`` requests per second on average, up to ``burst`` at once."""
        return cls(max(1, round(1000 / rate)), burst)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """One request's verdict and what the ``RateLimit-*`` headers say."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: int
    reset_ms: int

    @property
    def retry_after_s(self) -> int:
        """Whole seconds to wait, at least 1."""
        return max(1, math.ceil(self.retry_after_ms / 1000))

    @property
    def reset_s(self) -> int:
        """Whole seconds until the full burst is available again."""
        return math.ceil(self.reset_ms / 1000)


def gcra_step(now_ms: int, tat_ms: int | None, spec: RateSpec) -> tuple[RateDecision, int]:
    """The script's rule in Python: the verdict and the new theoretical arrival time."""
    tat = max(tat_ms if tat_ms is not None else now_ms, now_ms)
    allow_at = tat + spec.period_ms - spec.burst * spec.period_ms
    if now_ms < allow_at:
        allowed, retry_after = False, allow_at - now_ms
    else:
        allowed, retry_after, tat = True, 0, tat + spec.period_ms
    remaining = max(0, (now_ms - (tat - spec.burst * spec.period_ms)) // spec.period_ms)
    decision = RateDecision(allowed, spec.burst, remaining, retry_after, tat - now_ms)
    return decision, tat


def rate_key(group: str, subject: str) -> str:
    """The Redis key of one subject's bucket in one route group."""
    return f"shoal:rl:{group}:{subject}"


class RedisRateLimiter:
    """GCRA buckets in Redis, optionally fused with the session and user reads."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(_GCRA)

    async def hit(
        self, key: str, spec: RateSpec, read: Sequence[str] = ()
    ) -> tuple[RateDecision, list[bytes | None]]:
        """Take one request from ``key``'s bucket, and read the keys in ``read`` meanwhile.

        Raises:
            StorageUnavailableError: Redis could not answer.
        """
        async with translated():
            reply = await self._script(keys=[key, *read], args=[spec.period_ms, spec.burst])
        allowed, remaining, retry_after, reset = reply[:4]
        decision = RateDecision(
            bool(allowed), spec.burst, int(remaining), int(retry_after), int(reset)
        )
        values = [redis_bytes(v) for v in reply[4:]]
        values += [None] * (len(read) - len(values))  # Lua drops trailing nils
        return decision, values
