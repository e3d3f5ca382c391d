"""The Redis GCRA script against the real Redis: same verdicts as the Python rule."""

from __future__ import annotations

import uuid

from storage.connections import Connections
from storage.ratelimit import RateSpec, RedisRateLimiter, rate_key


async def test_script_admits_the_burst_then_refuses(connections: Connections) -> None:
    limiter, key = RedisRateLimiter(connections.redis), rate_key("test", uuid.uuid4().hex)
    spec = RateSpec(period_ms=60_000, burst=3)  # nothing refills during the test
    verdicts = [(await limiter.hit(key, spec))[0] for _ in range(4)]
    assert [d.allowed for d in verdicts] == [True, True, True, False]
    assert [d.remaining for d in verdicts] == [2, 1, 0, 0]
    assert 59_000 < verdicts[-1].retry_after_ms <= 60_000
    assert verdicts[-1].limit == 3


async def test_script_reads_the_extra_keys_in_the_same_round_trip(connections: Connections) -> None:
    limiter, key = RedisRateLimiter(connections.redis), rate_key("test", uuid.uuid4().hex)
    session, user = f"shoal:test:s:{uuid.uuid4()}", f"shoal:test:u:{uuid.uuid4()}"
    await connections.redis.set(session, b"a")
    decision, values = await limiter.hit(key, RateSpec(10, 5), (session, user))
    assert decision.allowed
    assert values == [b"a", None]


async def test_bucket_keys_expire_once_full_again(connections: Connections) -> None:
    limiter, key = RedisRateLimiter(connections.redis), rate_key("test", uuid.uuid4().hex)
    await limiter.hit(key, RateSpec(period_ms=500, burst=2))
    ttl = await connections.redis.pttl(key)
    assert 0 < ttl <= 500
