"""The inventory shard actor: a thin Ray shell around :class:`InventoryService`.

The composition root applies ``ray.remote`` with its options (detached, named, restarted
by Ray, no whole CPU reserved); this class only converts, calls, measures and maps errors.
Ray re-runs ``__init__`` after a crash, and the first call reloads the shard's rows.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from actors.inventory.model import NewProduct, Partitioning
from actors.inventory.service import InventoryService
from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig, Connections
from storage.products import SqlUnitOfWorkFactory
from storage.records import ProductRecord
from storage.telemetry import ACTOR_CALLS, ACTOR_LATENCY, configure_logging

T = TypeVar("T")
ACTOR_KIND = "inventory"


def shard_actor_name(shard: int) -> str:
    """The Ray actor name of inventory shard ``shard``."""
    return f"inventory-shard-{shard}"


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """What a shard reports to operators and readiness checks."""

    shard: int
    pid: int
    partitions: int
    products: int


class InventoryShardActor:
    """Single writer of one shard's products."""

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        connections: ConnectionConfig,
        cache_policy: CachePolicy,
        log_level: str = "INFO",
    ) -> None:
        configure_logging(log_level, component=shard_actor_name(shard))
        self._conn = Connections(connections)
        self._cache_policy = cache_policy
        self._partitioning = partitioning
        self._shard = shard
        self._service: InventoryService | None = None
        self._loading: asyncio.Lock | None = None

    async def _ready(self) -> InventoryService:
        if self._service is not None:
            return self._service
        self._loading = self._loading or asyncio.Lock()
        async with self._loading:
            if self._service is None:
                service = InventoryService(
                    self._shard,
                    self._partitioning,
                    SqlUnitOfWorkFactory(self._conn.engine),
                    RedisProductCache(self._conn.redis, self._cache_policy),
                )
                await service.load()
                self._service = service
        return self._service

    async def _measured(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call()
            outcome = "ok"
            return result
        finally:
            ACTOR_CALLS.labels(ACTOR_KIND, method, outcome).inc()
            ACTOR_LATENCY.labels(ACTOR_KIND, method).observe(time.perf_counter() - started)

    async def info(self) -> ShardInfo:
        """Report this shard's identity and load; answers only once its rows are loaded."""

        async def call() -> ShardInfo:
            service = await self._ready()
            owned = len(self._partitioning.partitions_of(self._shard))
            return ShardInfo(self._shard, os.getpid(), owned, len(service.products))

        return await self._measured("info", call)

    async def create_product(self, cmd: NewProduct) -> ProductRecord:
        """Add a product; the same product again returns the first result (see the service)."""

        async def call() -> ProductRecord:
            return await (await self._ready()).create_product(cmd)

        return await self._measured("create_product", call)
