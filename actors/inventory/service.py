"""Inventory use cases for one shard: the single writer of its partitions' products."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from actors._ops import Draft, Outcome, WrongShardError
from actors._writer import ShardWriter
from actors.inventory.errors import ProductExistsError, UnknownProductError
from actors.inventory.model import (
    STOCK_EVENTS,
    STOCK_KINDS,
    CreateProduct,
    StockCommand,
    UpdateProduct,
    new_row,
    product_view,
    stock_event,
)
from actors.placement import Partitioning
from storage.errors import StorageError
from storage.ports import ProductCache, UnitOfWork, UnitOfWorkFactory
from storage.records import ProductRecord

log = structlog.get_logger(__name__)
InventoryCommand = CreateProduct | UpdateProduct | StockCommand


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.retryable


class InventoryService(ShardWriter[str, ProductRecord, InventoryCommand]):
    """Owns the products of one shard's partitions; every change is committed, then uncached.

    Args:
        shard: this shard's index.
        partitioning: the partition layout shared by every process.
        uow: makes a unit of work (one PostgreSQL transaction) per batch.
        cache: the read cache to invalidate after each commit.
        max_batch: the most commands committed in one transaction.
    """

    kind = "inventory"

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        uow: UnitOfWorkFactory,
        cache: ProductCache,
        max_batch: int = 512,
    ) -> None:
        super().__init__(uow, max_batch)
        self.shard = shard
        self._partitioning = partitioning
        self._cache = cache

    async def warm(self) -> int:
        """Read every product of this shard's partitions into memory; returns how many."""
        async with self._uow() as uow:
            rows = await uow.products.in_partitions(self._partitioning.partitions_of(self.shard))
        self.entities = {r.sku: r for r in rows}
        return len(rows)

    def owns(self, key: str) -> bool:
        """Whether this shard owns ``key``."""
        return self._partitioning.owner_of(key) == self.shard

    def key_of(self, command: InventoryCommand) -> str:
        """The SKU ``command`` changes."""
        return command.sku

    def entity_key(self, entity: ProductRecord) -> str:
        """A product's SKU."""
        return entity.sku

    async def load(self, uow: UnitOfWork, keys: Sequence[str]) -> list[ProductRecord]:
        """The stored products among ``keys``."""
        return await uow.products.get_many(keys)

    def decide(self, command: InventoryCommand, draft: Draft) -> Outcome:
        """Apply one command to the batch's draft.

        Raises:
            WrongShardError: this shard does not own the SKU.
            UnknownProductError: no such product (not for create).
            ProductExistsError: create, and the SKU exists.
            OutOfStockError, NotReservedError, StockLimitError: the stock rules say no.
        """
        if not self.owns(command.sku):
            raise WrongShardError(command.sku, self.shard, self._partitioning.shards)
        row: ProductRecord | None = draft.get(command.sku)
        if isinstance(command, CreateProduct):
            if row is not None:
                raise ProductExistsError(command.sku)
            partition = self._partitioning.partition_of(command.sku)
            created = new_row(command.product, partition, draft.now)
            draft.put(command.sku, created)
            draft.emit(command.op, "ProductCreated", command.sku, product_view(created))
            return Outcome(value=product_view(created))
        if row is None:
            raise UnknownProductError(command.sku)
        if isinstance(command, UpdateProduct):
            changed = replace(
                row,
                name=command.name if command.name is not None else row.name,
                price=command.price if command.price is not None else row.price,
                updated_at=draft.now,
            )
            draft.put(command.sku, changed)
            draft.emit(command.op, "ProductUpdated", command.sku, product_view(changed))
            return Outcome(value=product_view(changed))
        moved = replace(STOCK_KINDS[command.kind](row, command.quantity), updated_at=draft.now)
        draft.put(command.sku, moved)
        draft.emit(command.op, STOCK_EVENTS[command.kind], command.sku, stock_event(command, moved))
        return Outcome(value={"available": moved.available, "reserved": moved.reserved})

    async def store(
        self,
        uow: UnitOfWork,
        created: list[ProductRecord],
        updated: list[ProductRecord],
        rows: list[Any],
    ) -> list[ProductRecord]:
        """Insert new products and compare-and-set changed ones, in the batch's transaction."""
        stored = [await uow.products.add(row) for row in created]
        if updated:
            stored += await uow.products.update_many(updated)
        return stored

    async def committed(self, entities: list[ProductRecord]) -> None:
        """Drop cached copies before anyone is answered; the TTL bounds staleness otherwise."""
        skus = [e.sku for e in entities]
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_retryable),
                stop=stop_after_attempt(3),
                wait=wait_random_exponential(multiplier=0.02, max=0.2),
                reraise=True,
            ):
                with attempt:
                    await self._cache.invalidate(skus)
        except StorageError as exc:
            log.error("cache_invalidation_failed", skus=skus, error=type(exc).__name__)
