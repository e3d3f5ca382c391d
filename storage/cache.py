"""Redis cache-aside for product reads: TTL with jitter, fenced fills, no stampede.

A miss takes a short Redis lock before it reads PostgreSQL; only the lock holder fills the
entry, and it fills through a script that writes only while it still holds the lock. The
owner's invalidation deletes the entry *and* the lock, so a reader that loaded a row just
before a change committed cannot put the old row back. Concurrent misses in one replica
share one load (single flight); misses in other replicas wait briefly for the holder's fill,
then read PostgreSQL without filling. When Redis cannot answer, reads go to PostgreSQL.
No library does fenced fills with single flight over redis-py, hence this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from storage._translate import redis_bytes, translated
from storage.telemetry import CACHE_REQUESTS

_FILL_IF_LOCKED = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
_ABSENT = b"-"
_LIST_GENERATION = "shoal:products:gen"
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long entries live and how misses wait.

    Attributes:
        ttl_s: lifetime of a present entry.
        jitter: fraction of ``ttl_s`` added or removed at random, so keys expire apart.
        absent_ttl_s: lifetime of a "no such key" entry.
        lock_ms: how long a miss may hold the fill lock.
        wait_ms: how long a miss without the lock waits for another's fill.
    """

    ttl_s: float = 300.0
    jitter: float = 0.1
    absent_ttl_s: float = 5.0
    lock_ms: int = 2000
    wait_ms: int = 100

    def ttl_ms(self, present: bool) -> int:
        """A jittered lifetime in milliseconds."""
        base = self.ttl_s if present else self.absent_ttl_s
        return max(1, int(base * 1000 * (1 + random.uniform(-self.jitter, self.jitter))))  # noqa: S311


@dataclass(frozen=True, slots=True)
class CachedBody:
    """A serialized representation and its entity tag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> CachedBody:
        """Wrap ``body`` with a strong ETag derived from its bytes."""
        return cls(body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"')

    def encode(self) -> bytes:
        """The form stored in Redis: the ETag, a newline, the body."""
        return self.etag.encode() + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedBody:
        """Inverse of :meth:`encode`."""
        etag, _, body = raw.partition(b"\n")
        return cls(body, etag.decode())


Loader = Callable[[], Awaitable[bytes | None]]


class RedisProductCache:
    """Cache-aside reads of products and product listings, and their invalidation."""

    name = "products"

    def __init__(self, client: aioredis.Redis, policy: CachePolicy) -> None:
        self._redis = client
        self._policy = policy
        self._fill = client.register_script(_FILL_IF_LOCKED)
        self._inflight: dict[str, asyncio.Future[CachedBody | None]] = {}

    @staticmethod
    def product_key(sku: str) -> str:
        """The Redis key of one product's entry."""
        return f"shoal:product:{sku}"

    async def product(
        self, sku: str, load: Loader, prefetched: Mapping[str, bytes | None] | None = None
    ) -> CachedBody | None:
        """Return the product's cached body, loading it on a miss; ``None`` if it does not exist.

        ``prefetched`` holds Redis values already read for this request (in the caller's own
        round trip); the entry is taken from there when present instead of asked again.
        """
        key = self.product_key(sku)
        if prefetched is not None and key in prefetched:
            return await self._resolve(key, prefetched[key], load)
        return await self._get(key, load)

    async def listing(self, after: str | None, limit: int, load: Loader) -> CachedBody:
        """Return one page of the product listing, cached per listing generation."""
        try:
            generation = _text(await self._redis.get(_LIST_GENERATION)) or "0"
        except RedisError:
            generation = "uncached"
        key = f"shoal:products:list:{generation}:{limit}:{after or ''}"
        page = await self._get(key, load, cacheable=generation != "uncached")
        assert page is not None, "a listing always has a body"
        return page

    async def invalidate(self, skus: Sequence[str]) -> None:
        """Drop the entries and fill locks of ``skus`` and start a new listing generation.

        Raises:
            StorageUnavailableError: Redis could not be reached.
        """
        keys = [self.product_key(s) for s in skus]
        async with translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys, *(k + ":lock" for k in keys))
            pipe.incr(_LIST_GENERATION)
            await pipe.execute()

    async def _get(self, key: str, load: Loader, cacheable: bool = True) -> CachedBody | None:
        if not cacheable:
            return await self._miss(key, load, cacheable=False)
        try:
            raw = redis_bytes(await self._redis.get(key))
        except RedisError as exc:
            log.warning("cache_unavailable", error=type(exc).__name__)
            CACHE_REQUESTS.labels(self.name, "error").inc()
            return await _materialize(load)
        return await self._resolve(key, raw, load)

    async def _resolve(self, key: str, raw: bytes | None, load: Loader) -> CachedBody | None:
        """Answer from an entry read from Redis, or load and fill on a miss."""
        if raw is not None:
            CACHE_REQUESTS.labels(self.name, "hit").inc()
            return None if raw == _ABSENT else CachedBody.decode(raw)
        return await self._miss(key, load, cacheable=True)

    async def _miss(self, key: str, load: Loader, cacheable: bool) -> CachedBody | None:
        CACHE_REQUESTS.labels(self.name, "miss").inc()
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[CachedBody | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await (self._load_and_fill(key, load) if cacheable else _materialize(load))
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _load_and_fill(self, key: str, load: Loader) -> CachedBody | None:
        lock_key, token = key + ":lock", secrets.token_hex(8)
        try:
            locked = await self._redis.set(lock_key, token, nx=True, px=self._policy.lock_ms)
            if not locked:
                waited = await self._wait_for_fill(key)
                if waited is not None:
                    return None if waited == _ABSENT else CachedBody.decode(waited)
        except RedisError:
            return await _materialize(load)
        value = await _materialize(load)
        if locked:
            stored = _ABSENT if value is None else value.encode()
            ttl = self._policy.ttl_ms(present=value is not None)
            try:
                await self._fill(keys=[key, lock_key], args=[token, stored, ttl])
            except RedisError as exc:
                log.warning("cache_fill_failed", error=type(exc).__name__)
        return value

    async def _wait_for_fill(self, key: str) -> bytes | None:
        deadline = asyncio.get_running_loop().time() + self._policy.wait_ms / 1000
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
            raw = redis_bytes(await self._redis.get(key))
            if raw is not None:
                return raw
        return None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def _materialize(load: Loader) -> CachedBody | None:
    body = await load()
    return None if body is None else CachedBody.of(body)
