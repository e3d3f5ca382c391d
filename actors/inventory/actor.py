"""The inventory shard actor: a thin Ray shell around :class:`InventoryService`.

The composition root applies ``ray.remote`` with its options (detached, named, restarted
by Ray, no whole CPU reserved); this class only converts, calls, measures and maps errors.
Ray re-runs ``__init__`` after a crash, and the first call reloads the shard's rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

from actors._shell import LazyService, measured
from actors.inventory.model import NewProduct, Partitioning
from actors.inventory.service import InventoryService
from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig, Connections
from storage.products import SqlUnitOfWorkFactory
from storage.records import ProductRecord
from storage.telemetry import configure_logging

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
        self._service = LazyService(self._build)

    async def _build(self) -> InventoryService:
        service = InventoryService(
            self._shard,
            self._partitioning,
            SqlUnitOfWorkFactory(self._conn.engine),
            RedisProductCache(self._conn.redis, self._cache_policy),
        )
        await service.load()
        return service

    async def info(self) -> ShardInfo:
        """Report this shard's identity and load; answers only once its rows are loaded."""

        async def call() -> ShardInfo:
            service = await self._service.get()
            owned = len(self._partitioning.partitions_of(self._shard))
            return ShardInfo(self._shard, os.getpid(), owned, len(service.products))

        return await measured(ACTOR_KIND, "info", call)

    async def create_product(self, cmd: NewProduct) -> ProductRecord:
        """Add a product; the same product again returns the first result (see the service)."""

        async def call() -> ProductRecord:
            return await (await self._service.get()).create_product(cmd)

        return await measured(ACTOR_KIND, "create_product", call)
