"""A circuit breaker whose state lives in Redis, shared by every replica of a caller.

States: *closed* (calls go through; outcomes are counted in a sliding window of buckets),
*open* (calls are refused for ``open_s``), *half-open* (at most ``half_open_probes`` calls
at a time probe the provider; that many successes close the breaker, one failure opens it
again). The breaker opens when, over the window, at least ``min_calls`` calls were made and
the share of failures reached ``failure_rate``; a call slower than ``slow_call_s`` counts as
a failure. Each step is one Lua script, so replicas never race, and the clock is Redis's.
When the keys are lost (FLUSHALL, restart) the breaker starts closed again.

Written here because no installed library fits: pybreaker and purgatory share state in
Redis but open on consecutive failures (no failure rate over a window, no minimum of calls,
no slow calls, no limit on half-open probes) and are not atomic across processes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from storage.errors import StorageError
from storage.telemetry import BREAKER_CALLS, BREAKER_STATE

T = TypeVar("T")
log = structlog.get_logger(__name__)
STATES = {"closed": 0, "open": 1, "half_open": 2}

_STEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window_ms, bucket_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local min_calls, rate = tonumber(ARGV[4]), tonumber(ARGV[5])
local open_ms, max_probes = tonumber(ARGV[6]), tonumber(ARGV[7])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local changed = tonumber(redis.call('HGET', KEYS[1], 'changed') or '0')
local function enter(s)
  redis.call('HSET', KEYS[1], 'state', s, 'changed', now, 'probes', 0, 'ok', 0)
  redis.call('DEL', KEYS[2])
  state, changed = s, now
end
if state == 'open' and now - changed >= open_ms then enter('half_open') end
local allowed = 0
if ARGV[1] == 'acquire' then
  if state == 'closed' then
    allowed = 1
  elseif state == 'half_open' then
    local probes = tonumber(redis.call('HGET', KEYS[1], 'probes') or '0')
    if probes >= max_probes and now - changed >= open_ms then
      probes = 0  -- probes that never reported back: let new ones try
      redis.call('HSET', KEYS[1], 'changed', now)
    end
    if probes < max_probes then
      redis.call('HSET', KEYS[1], 'probes', probes + 1)
      allowed = 1
    end
  end
elseif ARGV[1] == 'record' then
  local ok = ARGV[8] == '1'
  if state == 'closed' then
    local bucket = math.floor(now / bucket_ms)
    redis.call('HINCRBY', KEYS[2], 'c:' .. bucket, 1)
    if not ok then redis.call('HINCRBY', KEYS[2], 'f:' .. bucket, 1) end
    local calls, fails = 0, 0
    local fields = redis.call('HGETALL', KEYS[2])
    for i = 1, #fields, 2 do
      local kind, b = string.match(fields[i], '(%a):(%d+)')
      if (bucket - tonumber(b)) * bucket_ms >= window_ms then
        redis.call('HDEL', KEYS[2], fields[i])
      elseif kind == 'c' then
        calls = calls + tonumber(fields[i + 1])
      else
        fails = fails + tonumber(fields[i + 1])
      end
    end
    redis.call('PEXPIRE', KEYS[2], window_ms * 2)
    if calls >= min_calls and fails >= rate * calls then enter('open') end
  elseif state == 'half_open' then
    if not ok then
      enter('open')
    elseif redis.call('HINCRBY', KEYS[1], 'ok', 1) >= max_probes then
      enter('closed')
    else
      redis.call('HINCRBY', KEYS[1], 'probes', -1)
    end
  end
end
redis.call('PEXPIRE', KEYS[1], math.max(window_ms, open_ms) * 10)
return {allowed, state}
"""


class CircuitOpenError(StorageError):
    """The breaker refuses calls to the provider for now; try again after it half-opens."""

    retryable = True


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When the breaker opens and how it recovers.

    Attributes:
        window_s: the sliding window calls are counted over.
        min_calls: fewer calls than this in the window never open the breaker.
        failure_rate: share of failed calls (0..1) in the window that opens it.
        slow_call_s: a call slower than this counts as failed.
        open_s: how long it stays open before probing.
        half_open_probes: calls let through at once while half-open; that many successes close.
        bucket_s: the window's resolution.
    """

    window_s: float = 30.0
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_call_s: float = 1.0
    open_s: float = 10.0
    half_open_probes: int = 2
    bucket_s: float = 1.0


class RedisCircuitBreaker:
    """One named breaker in Redis; every instance with the same name shares its state."""

    def __init__(self, client: aioredis.Redis, name: str, policy: BreakerPolicy) -> None:
        self.name = name
        self._policy = policy
        self._keys = [f"shoal:breaker:{name}", f"shoal:breaker:{name}:window"]
        self._script = client.register_script(_STEP)

    async def _step(self, op: str, ok: bool = True) -> tuple[bool, str]:
        p = self._policy
        args: list[str | int | float] = [
            op,
            int(p.window_s * 1000),
            max(1, int(p.bucket_s * 1000)),
            p.min_calls,
            p.failure_rate,
            int(p.open_s * 1000),
            p.half_open_probes,
            "1" if ok else "0",
        ]
        allowed, raw = await self._script(keys=self._keys, args=args)
        state = raw.decode() if isinstance(raw, bytes) else str(raw)
        BREAKER_STATE.labels(self.name).set(STATES.get(state, 0))
        return bool(allowed), state

    async def state(self) -> str:
        """The breaker's state now (``closed``, ``open`` or ``half_open``)."""
        return (await self._step("peek"))[1]

    async def acquire(self) -> bool:
        """Whether a call may go ahead now (a half-open breaker counts it as a probe).

        When Redis cannot answer the call goes ahead: the breaker then starts closed.
        """
        try:
            return (await self._step("acquire"))[0]
        except RedisError as exc:
            log.warning("breaker_unavailable", breaker=self.name, error=type(exc).__name__)
            return True

    async def record(self, ok: bool) -> None:
        """Count a finished call's outcome."""
        try:
            await self._step("record", ok)
        except RedisError as exc:
            log.warning("breaker_unavailable", breaker=self.name, error=type(exc).__name__)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` through the breaker.

        Raises:
            CircuitOpenError: the breaker refused the call (``fn`` did not run).
        """
        if not await self.acquire():
            BREAKER_CALLS.labels(self.name, "rejected").inc()
            raise CircuitOpenError(f"breaker {self.name} is open")
        started = time.monotonic()
        try:
            result = await fn()
        except BaseException:
            BREAKER_CALLS.labels(self.name, "failure").inc()
            await self.record(False)
            raise
        slow = time.monotonic() - started > self._policy.slow_call_s
        BREAKER_CALLS.labels(self.name, "slow" if slow else "success").inc()
        await self.record(not slow)
        return result
