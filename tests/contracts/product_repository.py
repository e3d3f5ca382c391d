"""The contract every ProductRepository honours: run against the fake and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from storage.errors import ConflictError, StaleWriteError
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
        new = product(f"{prefix}-a")
        async with uow() as tx:
            added = await tx.products.add(new)
            await tx.commit()
        async with uow() as tx:
            got = await tx.products.get(f"{prefix}-a")
        assert got == added == new  # every field as given, ``updated_at`` too

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

    async def _added(self, uow: UnitOfWorkFactory, *skus: str) -> list[ProductRecord]:
        async with uow() as tx:
            added = [await tx.products.add(product(sku)) for sku in skus]
            await tx.commit()
        return added

    async def test_get_many_returns_the_existing_ones_once(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        first, second = await self._added(uow, f"{prefix}-m1", f"{prefix}-m2")
        async with uow() as tx:
            got = await tx.products.get_many([second.sku, f"{prefix}-none", first.sku, first.sku])
            none = await tx.products.get_many([])
        assert sorted(got, key=lambda p: p.sku) == [first, second]
        assert none == []

    async def test_update_many_stores_the_next_versions(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        first, second = await self._added(uow, f"{prefix}-u1", f"{prefix}-u2")
        later = datetime(2030, 1, 2, tzinfo=UTC)
        changed = [
            replace(first, name="New", price=99, available=1, reserved=4, version=2),
            replace(second, available=0, version=2, updated_at=later),
        ]
        async with uow() as tx:
            stored = await tx.products.update_many(changed)
            await tx.commit()
        async with uow() as tx:
            got = await tx.products.get_many([first.sku, second.sku])
        assert sorted(stored, key=lambda p: p.sku) == changed
        assert sorted(got, key=lambda p: p.sku) == changed

    async def test_update_many_keeps_currency_and_partition(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        (added,) = await self._added(uow, f"{prefix}-k")
        async with uow() as tx:
            (stored,) = await tx.products.update_many(
                [replace(added, currency="EUR", partition=7, version=2)]
            )
            await tx.commit()
        assert (stored.currency, stored.partition, stored.version) == ("USD", 3, 2)

    @pytest.mark.parametrize("version", [1, 3])
    async def test_update_many_with_another_version_is_stale_and_changes_nothing(
        self, uow: UnitOfWorkFactory, prefix: str, version: int
    ) -> None:
        good, bad = await self._added(uow, f"{prefix}-s1", f"{prefix}-s2")
        with pytest.raises(StaleWriteError):
            async with uow() as tx:
                await tx.products.update_many(
                    [
                        replace(good, available=1, version=2),
                        replace(bad, available=1, version=version),
                    ]
                )
                await tx.commit()
        async with uow() as tx:
            got = await tx.products.get_many([good.sku, bad.sku])
        assert sorted(got, key=lambda p: p.sku) == [good, bad]

    async def test_update_many_of_an_unknown_sku_is_stale(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        with pytest.raises(StaleWriteError):
            async with uow() as tx:
                await tx.products.update_many([replace(product(f"{prefix}-x"), version=2)])

    async def test_update_many_of_one_row_twice_is_stale(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        (added,) = await self._added(uow, f"{prefix}-t")
        with pytest.raises(StaleWriteError):
            async with uow() as tx:
                await tx.products.update_many(
                    [replace(added, version=2), replace(added, available=9, version=2)]
                )
                await tx.commit()
        async with uow() as tx:
            assert await tx.products.get(added.sku) == added

    async def test_update_many_to_negative_stock_is_a_conflict(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        (added,) = await self._added(uow, f"{prefix}-n")
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.products.update_many([replace(added, available=-1, version=2)])
                await tx.commit()
        async with uow() as tx:
            assert await tx.products.get(added.sku) == added

    async def test_update_many_of_nothing_stores_nothing(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            assert await tx.products.update_many([]) == []

    async def test_uncommitted_update_is_rolled_back(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        (added,) = await self._added(uow, f"{prefix}-r")
        async with uow() as tx:
            await tx.products.update_many([replace(added, available=0, version=2)])
        async with uow() as tx:
            assert await tx.products.get(added.sku) == added

    async def test_transactions_writing_other_rows_both_commit(
        self, uow: UnitOfWorkFactory, prefix: str
    ) -> None:
        async with uow() as first, uow() as second:
            await first.products.add(product(f"{prefix}-c1"))
            await second.products.add(product(f"{prefix}-c2"))
            await first.commit()
            await second.commit()
        async with uow() as tx:
            got = await tx.products.get_many([f"{prefix}-c1", f"{prefix}-c2"])
        assert sorted(p.sku for p in got) == [f"{prefix}-c1", f"{prefix}-c2"]
