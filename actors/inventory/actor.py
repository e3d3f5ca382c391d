"""The inventory shard actor: a thin Ray shell around :class:`InventoryService`."""

from __future__ import annotations

from actors._shell import ShardActor
from actors.inventory.service import InventoryService
from actors.placement import Partitioning
from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig
from storage.products import SqlUnitOfWorkFactory


def shard_actor_name(shard: int) -> str:
    """The Ray actor name of inventory shard ``shard``."""
    return f"inventory-shard-{shard}"


class InventoryShardActor(ShardActor[InventoryService]):
    """Single writer of one shard's products."""

    kind = "inventory"
    actor_name = staticmethod(shard_actor_name)

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        connections: ConnectionConfig,
        cache_policy: CachePolicy,
        *,
        release: str = "dev",
        log_level: str = "INFO",
    ) -> None:
        super().__init__(shard, partitioning, connections, release=release, log_level=log_level)
        self._cache_policy = cache_policy

    async def _build(self) -> InventoryService:
        service = InventoryService(
            self._shard,
            self._partitioning,
            SqlUnitOfWorkFactory(self._conn.engine),
            RedisProductCache(self._conn.redis, self._cache_policy),
        )
        await service.warm()
        return service
