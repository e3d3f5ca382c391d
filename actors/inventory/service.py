"""Inventory use cases for one shard: the single writer of its partitions' products."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from actors.inventory.errors import ProductExistsError, UnknownProductError, WrongShardError
from actors.inventory.model import NewProduct, Partitioning
from storage.errors import ConflictError, StorageError
from storage.ports import ProductCache, UnitOfWorkFactory
from storage.records import ProductRecord

log = structlog.get_logger(__name__)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.retryable


class InventoryService:
    """Owns the products of one shard's partitions; every change is committed, then uncached.

    Args:
        shard: this shard's index.
        partitioning: the partition layout shared by every process.
        uow: makes a unit of work (one PostgreSQL transaction) per call.
        cache: the read cache to invalidate after each commit.
    """

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        uow: UnitOfWorkFactory,
        cache: ProductCache,
    ) -> None:
        self.shard = shard
        self._partitioning = partitioning
        self._uow = uow
        self._cache = cache
        self._products: dict[str, ProductRecord] = {}

    @property
    def products(self) -> dict[str, ProductRecord]:
        """The in-memory copy of this shard's rows."""
        return self._products

    async def load(self) -> int:
        """Reload this shard's products from PostgreSQL; returns how many."""
        async with self._uow() as uow:
            rows = await uow.products.in_partitions(self._partitioning.partitions_of(self.shard))
        self._products = {r.sku: r for r in rows}
        return len(rows)

    def product(self, sku: str) -> ProductRecord:
        """The current row of an owned product.

        Raises:
            WrongShardError: this shard does not own ``sku``.
            UnknownProductError: no such product.
        """
        self._check_owner(sku)
        try:
            return self._products[sku]
        except KeyError:
            raise UnknownProductError(sku) from None

    async def create_product(self, cmd: NewProduct) -> ProductRecord:
        """Add a product; creating the same product again returns the first result.

        Raises:
            WrongShardError: this shard does not own the SKU.
            ProductExistsError: the SKU exists with other data.
        """
        self._check_owner(cmd.sku)
        existing = self._products.get(cmd.sku)
        if existing is not None:
            return self._same_or_conflict(existing, cmd)
        row = ProductRecord(
            sku=cmd.sku,
            name=cmd.name.strip(),
            price=cmd.price,
            currency=cmd.currency,
            available=cmd.initial_stock,
            reserved=0,
            partition=self._partitioning.partition_of(cmd.sku),
            version=1,
            updated_at=datetime.now(UTC),  # the database stamps the stored row
        )
        try:
            async with self._uow() as uow:
                row = await uow.products.add(row)
                await uow.commit()
        except ConflictError:
            # Committed by an earlier attempt whose reply was lost: reload and compare.
            await self.load()
            return self._same_or_conflict(self._products[cmd.sku], cmd)
        self._products[row.sku] = row
        await self._invalidate([row.sku])
        return row

    def _check_owner(self, sku: str) -> None:
        if self._partitioning.owner_of(sku) != self.shard:
            raise WrongShardError(sku, self.shard)

    @staticmethod
    def _same_or_conflict(existing: ProductRecord, cmd: NewProduct) -> ProductRecord:
        same = (existing.name, existing.price, existing.currency) == (
            cmd.name.strip(),
            cmd.price,
            cmd.currency,
        )
        if not same:
            raise ProductExistsError(cmd.sku)
        return existing

    async def _invalidate(self, skus: list[str]) -> None:
        """Drop cached copies after commit; the TTL bounds staleness if Redis stays away."""
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
