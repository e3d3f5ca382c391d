"""The Redis login throttle: fixed windows counted atomically, against the real Redis."""

from __future__ import annotations

import asyncio
import uuid

from storage.connections import Connections
from storage.login_throttle import RedisLoginThrottle


def keys() -> tuple[str, str]:
    mark = uuid.uuid4().hex
    return f"email:{mark}@example.com", f"addr:{mark}"


async def test_hits_count_per_key_in_one_window(connections: Connections) -> None:
    throttle, (email, addr) = RedisLoginThrottle(connections.redis), keys()
    first = await throttle.hit([email, addr], 60)
    second = await throttle.hit([email], 60)
    assert [c.count for c in first] == [1, 1]
    assert second[0].count == 2
    assert 0 < second[0].remaining_ms <= first[0].remaining_ms <= 60_000


async def test_concurrent_hits_are_all_counted(connections: Connections) -> None:
    throttle, (email, _) = RedisLoginThrottle(connections.redis), keys()
    results = await asyncio.gather(*(throttle.hit([email], 60) for _ in range(50)))
    assert sorted(r[0].count for r in results) == list(range(1, 51))


async def test_a_window_is_not_extended_by_later_hits_and_ends(connections: Connections) -> None:
    throttle, (email, _) = RedisLoginThrottle(connections.redis), keys()
    await throttle.hit([email], 1)
    await asyncio.sleep(0.6)
    later = await throttle.hit([email], 1)
    assert later[0].count == 2 and later[0].remaining_ms <= 500
    await asyncio.sleep(later[0].remaining_ms / 1000 + 0.1)
    assert (await throttle.hit([email], 1))[0].count == 1


async def test_clear_and_forgive(connections: Connections) -> None:
    throttle, (email, addr) = RedisLoginThrottle(connections.redis), keys()
    for _ in range(3):
        await throttle.hit([email, addr], 60)
    await throttle.clear(email)
    await throttle.forgive(addr)
    await throttle.forgive(f"addr:{uuid.uuid4().hex}")  # unknown: stays absent, not negative
    counts = await throttle.hit([email, addr], 60)
    assert [c.count for c in counts] == [1, 3]
    assert 0 < counts[1].remaining_ms <= 60_000
    raw = await connections.redis.keys("shoal:login:*")
    assert all(email.encode() not in k for k in raw)  # keys never hold the email itself
