"""The contract every ProductRepository honours: run against the fake and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from storage.errors import ConflictError
from storage.ports import UnitOfWorkFactory
from storage.records import ProductRecord


def product(sku: str, partition: int = 3, available: int = 5) -> ProductRecord:
    return ProductRecord(
        sku=sku,
        name=f"Product {sku}",
        price=1234,
        currency="USD",
        available=available,
        reserved=0,
        partition=partition,
        version=1,
        updated_at=datetime.fromtimestamp(0, UTC),
    )


class ProductRepositoryContract:
    """Subclasses provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    @pytest.fixture
    def prefix(self) -> str:
        return "T" + uuid.uuid4().hex[:10]

    async def test_added_product_is_read_back_after_commit(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        async with uow() as tx:
            added = await tx.products.add(product(f"{prefix}-a"))
            await tx.commit()
        async with uow() as tx:
            got = await tx.products.get(f"{prefix}-a")
        assert got is not None
        assert (got.sku, got.name, got.price, got.available) == (added.sku, added.name, 1234, 5)
        assert got.updated_at.year >= 2024

    async def test_uncommitted_add_is_rolled_back(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        async with uow() as tx:
            await tx.products.add(product(f"{prefix}-b"))
        async with uow() as tx:
            assert await tx.products.get(f"{prefix}-b") is None

    async def test_duplicate_sku_is_a_conflict(self, uow: UnitOfWorkFactory, prefix: str) -> None:
        async with uow() as tx:
            await tx.products.add(product(f"{prefix}-c"))
            await tx.commit()
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.products.add(product(f"{prefix}-c"))
                await tx.commit()

    async def test_unknown_sku_reads_none(self, uow: UnitOfWorkFactory, prefix: str) -> None:
        async with uow() as tx:
            assert await tx.products.get(f"{prefix}-missing") is None

    async def test_list_pages_in_sku_order_without_gaps(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        skus = [f"{prefix}-{i:02d}" for i in range(5)]
        async with uow() as tx:
            for sku in reversed(skus):
                await tx.products.add(product(sku))
            await tx.commit()
        seen: list[str] = []
        after: str | None = f"{prefix}-"
        while True:
            async with uow() as tx:
                page = await tx.products.list_after(after, 2)
            seen += [p.sku for p in page.items if p.sku.startswith(prefix)]
            if page.next_after is None or not page.next_after.startswith(prefix):
                break
            after = page.next_after
        assert seen == skus

    async def test_in_partitions_returns_only_those_partitions(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        async with uow() as tx:
            await tx.products.add(product(f"{prefix}-p1", partition=1))
            await tx.products.add(product(f"{prefix}-p2", partition=2))
            await tx.commit()
        async with uow() as tx:
            rows = await tx.products.in_partitions([2])
        mine = {r.sku for r in rows if r.sku.startswith(prefix)}
        assert mine == {f"{prefix}-p2"}
        assert all(r.partition == 2 for r in rows)
