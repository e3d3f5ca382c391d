from __future__ import annotations

import pytest

from actors.inventory.errors import ProductExistsError, UnknownProductError, WrongShardError
from actors.inventory.model import NewProduct, Partitioning
from actors.inventory.service import InventoryService
from tests.fakes import FakeProductCache, FakeUnitOfWorkFactory

LAYOUT = Partitioning(partitions=8, shards=2)


def owned_sku(shard: int, stem: str = "SKU") -> str:
    return next(f"{stem}-{i}" for i in range(1000) if LAYOUT.owner_of(f"{stem}-{i}") == shard)


def service(
    uow: FakeUnitOfWorkFactory, cache: FakeProductCache, shard: int = 0
) -> InventoryService:
    return InventoryService(shard, LAYOUT, uow, cache)


async def test_created_product_is_committed_then_uncached() -> None:
    uow, cache = FakeUnitOfWorkFactory(), FakeProductCache()
    sku = owned_sku(0)
    row = await service(uow, cache).create_product(NewProduct(sku, "Tea", 100, "USD", 7))
    assert uow.rows[sku].available == 7
    assert row.partition == LAYOUT.partition_of(sku)
    assert cache.invalidated == [sku]


async def test_creating_the_same_product_twice_changes_nothing() -> None:
    uow, cache = FakeUnitOfWorkFactory(), FakeProductCache()
    inventory, sku = service(uow, cache), owned_sku(0)
    first = await inventory.create_product(NewProduct(sku, "Tea", 100, "USD", 7))
    again = await inventory.create_product(NewProduct(sku, "Tea", 100, "USD", 7))
    assert again == first
    assert cache.invalidated == [sku]


async def test_same_sku_with_other_data_is_a_conflict() -> None:
    uow, cache = FakeUnitOfWorkFactory(), FakeProductCache()
    inventory, sku = service(uow, cache), owned_sku(0)
    await inventory.create_product(NewProduct(sku, "Tea", 100, "USD", 7))
    with pytest.raises(ProductExistsError):
        await inventory.create_product(NewProduct(sku, "Coffee", 100, "USD", 7))


async def test_a_reply_lost_after_commit_is_answered_from_the_database() -> None:
    uow, cache = FakeUnitOfWorkFactory(), FakeProductCache()
    sku = owned_sku(0)
    await service(uow, cache).create_product(NewProduct(sku, "Tea", 100, "USD", 7))
    fresh = service(uow, cache)  # a restarted actor that has not loaded yet
    row = await fresh.create_product(NewProduct(sku, "Tea", 100, "USD", 7))
    assert row.sku == sku
    assert len(uow.rows) == 1


async def test_a_shard_refuses_keys_it_does_not_own() -> None:
    inventory = service(FakeUnitOfWorkFactory(), FakeProductCache(), shard=0)
    with pytest.raises(WrongShardError):
        await inventory.create_product(NewProduct(owned_sku(1), "Tea", 100, "USD", 7))


async def test_restarted_shard_reloads_only_its_own_products() -> None:
    uow, cache = FakeUnitOfWorkFactory(), FakeProductCache()
    mine, theirs = owned_sku(0, "A"), owned_sku(1, "B")
    await service(uow, cache, 0).create_product(NewProduct(mine, "Tea", 100, "USD", 7))
    await service(uow, cache, 1).create_product(NewProduct(theirs, "Tea", 100, "USD", 7))
    restarted = service(uow, cache, 0)
    assert await restarted.load() == 1
    assert restarted.product(mine).available == 7
    with pytest.raises(WrongShardError):
        restarted.product(theirs)
    with pytest.raises(UnknownProductError):
        restarted.product(owned_sku(0, "C"))
