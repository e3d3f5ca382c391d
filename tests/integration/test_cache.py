"""The product cache against a real Redis: hits, fenced fills, single flight, Redis loss."""

from __future__ import annotations

import asyncio
import uuid

from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig, Connections
from storage.telemetry import CACHE_REQUESTS


def _count(outcome: str) -> float:
    return CACHE_REQUESTS.labels("products", outcome)._value.get()  # type: ignore[attr-defined]


def _sku() -> str:
    return "C" + uuid.uuid4().hex[:12]


async def test_second_read_is_a_hit_and_skips_the_loader(connections: Connections) -> None:
    cache, sku, calls = RedisProductCache(connections.redis, CachePolicy()), _sku(), []

    async def load() -> bytes:
        calls.append(1)
        return b'{"v": 1}'

    hits = _count("hit")
    first = await cache.product(sku, load)
    second = await cache.product(sku, load)
    assert first == second
    assert first is not None and first.body == b'{"v": 1}'
    assert len(calls) == 1
    assert _count("hit") == hits + 1


async def test_absent_products_are_cached_briefly(connections: Connections) -> None:
    cache, sku, calls = RedisProductCache(connections.redis, CachePolicy()), _sku(), []

    async def load() -> bytes | None:
        calls.append(1)
        return None

    assert await cache.product(sku, load) is None
    assert await cache.product(sku, load) is None
    assert len(calls) == 1
    ttl = await connections.redis.pttl(RedisProductCache.product_key(sku))
    assert 0 < ttl <= 5500


async def test_concurrent_misses_in_one_process_load_once(connections: Connections) -> None:
    cache, sku, calls = RedisProductCache(connections.redis, CachePolicy()), _sku(), []

    async def load() -> bytes:
        calls.append(1)
        await asyncio.sleep(0.05)
        return b"{}"

    results = await asyncio.gather(*(cache.product(sku, load) for _ in range(50)))
    assert len(calls) == 1
    assert len({r.etag for r in results if r is not None}) == 1


async def test_misses_in_other_processes_wait_for_the_lock_holder(connections: Connections) -> None:
    policy = CachePolicy(wait_ms=500)
    replicas = [RedisProductCache(connections.redis, policy) for _ in range(5)]
    sku, calls = _sku(), []

    async def load() -> bytes:
        calls.append(1)
        await asyncio.sleep(0.05)
        return b'{"x": 1}'

    await asyncio.gather(*(r.product(sku, load) for r in replicas))
    assert len(calls) == 1


async def test_invalidation_during_a_load_keeps_the_old_row_out(connections: Connections) -> None:
    cache, sku = RedisProductCache(connections.redis, CachePolicy()), _sku()
    loading, release = asyncio.Event(), asyncio.Event()

    async def slow_old_load() -> bytes:
        loading.set()
        await release.wait()
        return b'{"v": "old"}'

    reader = asyncio.create_task(cache.product(sku, slow_old_load))
    await loading.wait()
    await cache.invalidate([sku])  # the owner committed a change meanwhile
    release.set()
    assert (await reader) is not None

    async def new_load() -> bytes:
        return b'{"v": "new"}'

    fresh = await cache.product(sku, new_load)
    assert fresh is not None and fresh.body == b'{"v": "new"}'


async def test_listing_generation_changes_on_invalidation(connections: Connections) -> None:
    cache = RedisProductCache(connections.redis, CachePolicy())
    version = {"n": 0}

    async def load() -> bytes:
        return f'{{"n": {version["n"]}}}'.encode()

    before = await cache.listing(None, 7, load)
    version["n"] = 1
    assert await cache.listing(None, 7, load) == before
    await cache.invalidate([_sku()])
    after = await cache.listing(None, 7, load)
    assert after.body == b'{"n": 1}'


async def test_reads_fall_back_to_the_loader_when_redis_is_unreachable(
    connections: Connections,
) -> None:
    dead = Connections(
        ConnectionConfig(
            connections.config.database_url, "redis://127.0.0.1:1/0", connect_timeout_s=0.5
        )
    )
    cache = RedisProductCache(dead.redis, CachePolicy())
    errors = _count("error")

    async def load() -> bytes:
        return b"{}"

    entry = await cache.product(_sku(), load)
    assert entry is not None and entry.body == b"{}"
    assert _count("error") == errors + 1
    await dead.close()


async def test_an_entry_prefetched_in_another_round_trip_is_used_as_is(
    connections: Connections,
) -> None:
    cache, sku, calls = RedisProductCache(connections.redis, CachePolicy()), _sku(), []

    async def load() -> bytes:
        calls.append(1)
        return b'{"v": "db"}'

    key = RedisProductCache.product_key(sku)
    stored = await cache.product(sku, load)  # fills Redis
    assert stored is not None
    hits = _count("hit")
    again = await cache.product(sku, load, {key: stored.encode()})
    assert again == stored
    assert _count("hit") == hits + 1
    missed = await cache.product(_sku(), load, {key: None})  # other key: asks Redis itself
    assert missed is not None
    fresh_sku = _sku()
    absent = await cache.product(fresh_sku, load, {RedisProductCache.product_key(fresh_sku): None})
    assert absent is not None and absent.body == b'{"v": "db"}'
    assert len(calls) == 3
