"""The inventory shard: a group-committing single writer, on the fake unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest

from actors._ops import (
    IdempotencyConflictError,
    Operation,
    OperationInProgressError,
    Outcome,
    WrongShardError,
)
from actors.inventory.errors import (
    NotReservedError,
    OutOfStockError,
    ProductExistsError,
    StockLimitError,
    UnknownProductError,
)
from actors.inventory.model import (
    MAX_STOCK,
    CreateProduct,
    NewProduct,
    StockCommand,
    UpdateProduct,
    product_view,
)
from actors.inventory.service import InventoryCommand, InventoryService
from actors.placement import Partitioning
from storage.errors import StaleWriteError, StorageError, StorageUnavailableError
from storage.records import ProductRecord
from tests.fakes import CountingUnitOfWorkFactory, FakeProductCache, FakeUnitOfWork

LAYOUT = Partitioning(partitions=8, shards=2)


def owned_sku(shard: int, stem: str = "SKU", nth: int = 0) -> str:
    owned = (f"{stem}-{i}" for i in range(10_000) if LAYOUT.owner_of(f"{stem}-{i}") == shard)
    return [next(owned) for _ in range(nth + 1)][-1]


def create(sku: str, stock: int = 7, name: str = "Tea", key: str | None = None) -> CreateProduct:
    request = {"create": sku, "name": name, "stock": stock}
    op = Operation.of(key, request) if key else Operation.once(request)
    return CreateProduct(op, NewProduct(sku, name, 100, "USD", stock))


def move(sku: str, kind: str, quantity: int, key: str | None = None) -> StockCommand:
    request = {"sku": sku, "kind": kind, "quantity": quantity}
    op = Operation.of(key, request) if key else Operation.once(request)
    return StockCommand(op, sku, kind, quantity)


class Shard:
    """An inventory shard on a counting fake unit of work, with helpers to drive it."""

    def __init__(
        self,
        shard: int = 0,
        uow: CountingUnitOfWorkFactory | None = None,
        cache: FakeProductCache | None = None,
        max_batch: int = 512,
    ) -> None:
        self.uow = uow or CountingUnitOfWorkFactory()
        self.cache = cache or FakeProductCache()
        self.service = InventoryService(shard, LAYOUT, self.uow, self.cache, max_batch)

    @property
    def rows(self) -> dict[str, ProductRecord]:
        return self.uow.inner.rows

    async def apply(self, *commands: InventoryCommand) -> list[Outcome | Exception]:
        return await self.service.submit(commands)

    async def outcome(self, command: InventoryCommand) -> Outcome:
        (result,) = await self.apply(command)
        assert isinstance(result, Outcome), result
        return result

    async def value(self, command: InventoryCommand) -> dict[str, object]:
        return dict((await self.outcome(command)).unwrap())

    async def concurrently(self, commands: Sequence[InventoryCommand]) -> list[Outcome | Exception]:
        """Each command in its own call, all at once (as many gateway requests would)."""
        results = await asyncio.gather(*(self.service.submit([c]) for c in commands))
        return [r for (r,) in results]

    def refused(self, outcome: Outcome) -> type[Exception]:
        assert outcome.refusal is not None, outcome
        return type(outcome.refusal)


@pytest.fixture
def shard() -> Shard:
    return Shard()


async def test_a_created_product_is_committed_then_uncached(shard: Shard) -> None:
    sku = owned_sku(0)
    value = await shard.value(create(sku))
    row = shard.rows[sku]
    assert value == product_view(row)
    assert (row.available, row.reserved, row.version) == (7, 0, 1)
    assert row.partition == LAYOUT.partition_of(sku)
    assert shard.service.entities[sku] == row
    assert shard.cache.invalidated == [sku]


async def test_concurrent_commands_share_transactions(shard: Shard) -> None:
    skus = [owned_sku(0, nth=i) for i in range(3)]
    await shard.apply(*(create(s, stock=0) for s in skus))
    begun = shard.uow.begun
    commands = [move(skus[i % 3], "restock", i + 1) for i in range(60)]
    results = await shard.concurrently(commands)
    assert all(isinstance(r, Outcome) and r.refusal is None for r in results)
    assert shard.uow.begun - begun <= 2 < len(commands)
    for k, sku in enumerate(skus):
        assert shard.rows[sku].available == sum(i + 1 for i in range(k, 60, 3))
    assert len(shard.uow.inner.operations) == 3 + 60  # one per command, the creates too


async def test_a_batch_is_at_most_max_batch_commands() -> None:
    small = Shard(max_batch=10)
    sku = owned_sku(0)
    await small.apply(create(sku, stock=0))
    begun = small.uow.begun
    results = await small.concurrently([move(sku, "restock", 1) for _ in range(25)])
    assert all(isinstance(r, Outcome) for r in results)
    assert small.uow.begun - begun == 3
    assert small.rows[sku].available == 25


async def test_a_row_changed_by_one_batch_moves_one_version(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    await shard.concurrently([move(sku, "reserve", 1) for _ in range(5)])
    row = shard.rows[sku]
    assert (row.available, row.reserved, row.version) == (2, 5, 2)


async def test_the_same_key_twice_is_applied_once_and_replayed(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    first = await shard.outcome(move(sku, "reserve", 2, key="k-1"))
    again = await shard.outcome(move(sku, "reserve", 2, key="k-1"))
    assert not first.replayed and again.replayed
    assert again.value == first.value == {"available": 5, "reserved": 2}
    assert (shard.rows[sku].available, shard.rows[sku].reserved) == (5, 2)


async def test_a_restarted_shard_replays_from_the_operation_log(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, key="create-1"))
    restarted = Shard(uow=shard.uow, cache=shard.cache)
    again = await restarted.outcome(create(sku, key="create-1"))
    assert again.replayed
    assert again.value == product_view(shard.rows[sku])
    assert shard.rows[sku].version == 1


async def test_the_same_key_for_another_request_is_a_conflict(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    await shard.apply(move(sku, "reserve", 2, key="k-1"))
    (result,) = await shard.apply(move(sku, "reserve", 3, key="k-1"))
    assert isinstance(result, IdempotencyConflictError)
    assert result.key == "k-1"
    assert shard.rows[sku].reserved == 2


async def test_a_key_twice_in_one_batch_is_in_progress_for_the_second(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    first, second = await shard.apply(
        move(sku, "reserve", 2, key="k-1"), move(sku, "reserve", 2, key="k-1")
    )
    assert isinstance(first, Outcome) and first.refusal is None
    assert isinstance(second, OperationInProgressError)
    assert shard.rows[sku].reserved == 2


async def test_a_repeat_in_a_batch_is_replayed_and_the_rest_committed(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    done = await shard.outcome(move(sku, "reserve", 1, key="done"))
    again, fresh = await shard.apply(move(sku, "reserve", 1, key="done"), move(sku, "reserve", 2))
    assert isinstance(again, Outcome) and again.replayed and again.value == done.value
    assert isinstance(fresh, Outcome) and fresh.value == {"available": 4, "reserved": 3}


async def test_out_of_stock_is_recorded_and_replayed(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=3))
    refused = await shard.outcome(move(sku, "reserve", 5, key="big"))
    assert shard.refused(refused) is OutOfStockError
    assert refused.refusal is not None
    assert refused.refusal.detail == {"sku": sku, "available": 3, "requested": 5}
    await shard.apply(move(sku, "restock", 10))
    again = await shard.outcome(move(sku, "reserve", 5, key="big"))
    assert again.replayed and shard.refused(again) is OutOfStockError
    assert (shard.rows[sku].available, shard.rows[sku].reserved) == (13, 0)
    with pytest.raises(OutOfStockError):
        again.unwrap()


async def test_an_unknown_product_is_recorded_and_replayed(shard: Shard) -> None:
    sku = owned_sku(0)
    refused = await shard.outcome(move(sku, "restock", 1, key="early"))
    assert shard.refused(refused) is UnknownProductError
    assert "early" in shard.uow.inner.operations
    await shard.apply(create(sku, stock=0))
    again = await shard.outcome(move(sku, "restock", 1, key="early"))
    assert again.replayed and shard.refused(again) is UnknownProductError
    assert shard.rows[sku].available == 0


async def test_creating_an_existing_sku_is_refused(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    refused = await shard.outcome(create(sku, name="Coffee"))
    assert shard.refused(refused) is ProductExistsError
    assert shard.rows[sku].name == "Tea"


async def test_releasing_more_than_reserved_is_refused(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku), move(sku, "reserve", 2))
    assert shard.refused(await shard.outcome(move(sku, "release", 3))) is NotReservedError
    assert shard.refused(await shard.outcome(move(sku, "commit", 3))) is NotReservedError
    assert (shard.rows[sku].available, shard.rows[sku].reserved) == (5, 2)


async def test_restocking_past_the_largest_count_is_refused(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=0))
    shard.rows[sku] = replace(shard.rows[sku], available=MAX_STOCK - 1, version=2)
    restarted = Shard(uow=shard.uow)
    refused = await restarted.outcome(move(sku, "restock", 2))
    assert shard.refused(refused) is StockLimitError
    assert shard.rows[sku].available == MAX_STOCK - 1


async def test_reserve_release_and_commit_move_units(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=10))
    assert await shard.value(move(sku, "reserve", 4)) == {"available": 6, "reserved": 4}
    assert await shard.value(move(sku, "release", 1)) == {"available": 7, "reserved": 3}
    assert await shard.value(move(sku, "commit", 3)) == {"available": 7, "reserved": 0}
    assert shard.rows[sku].version == 4


async def test_an_update_changes_name_and_price_only(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))
    update = UpdateProduct(Operation.once({"sku": sku}), sku, name="  Green tea ", price=250)
    value = await shard.value(update)
    row = shard.rows[sku]
    assert (row.name, row.price, row.available, row.version) == ("Green tea", 250, 7, 2)
    assert value == product_view(row)
    assert shard.cache.invalidated == [sku, sku]


async def test_a_product_created_and_moved_in_one_batch_is_inserted_once(shard: Shard) -> None:
    sku = owned_sku(0)
    created, restocked, reserved = await shard.apply(
        create(sku, stock=1), move(sku, "restock", 4), move(sku, "reserve", 2)
    )
    assert all(isinstance(r, Outcome) and r.refusal is None for r in (created, restocked))
    assert isinstance(reserved, Outcome) and reserved.value == {"available": 3, "reserved": 2}
    row = shard.rows[sku]
    assert (row.available, row.reserved, row.version) == (3, 2, 1)
    assert shard.uow.commits == 1


async def test_a_row_changed_behind_the_shard_is_reloaded_and_applied_once(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=5))
    behind = shard.rows[sku] = replace(shard.rows[sku], available=100, version=2)
    begun = shard.uow.begun
    value = await shard.value(move(sku, "reserve", 1, key="after-race"))
    assert value == {"available": 99, "reserved": 1}
    row = shard.rows[sku]
    assert (row.available, row.reserved, row.version) == (99, 1, behind.version + 1)
    assert shard.uow.begun - begun == 2  # the stale attempt, then the one that committed
    assert shard.service.entities[sku] == row


async def test_a_refusal_is_not_decided_on_a_row_changed_behind_the_shard(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=1))
    shard.rows[sku] = replace(shard.rows[sku], available=100, version=2)
    outcome = await shard.outcome(move(sku, "reserve", 5, key="after-race"))
    assert outcome.refusal is None
    assert shard.rows[sku].available == 95


async def test_a_row_that_keeps_changing_gives_up_and_records_nothing(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku))

    def always_stale(tx: FakeUnitOfWork) -> None:
        async def update_many(rows: object) -> list[ProductRecord]:
            raise StaleWriteError("another writer")

        tx.products.update_many = update_many  # type: ignore[method-assign]

    shard.uow.on_enter = always_stale
    begun = shard.uow.begun
    (result,) = await shard.apply(move(sku, "reserve", 1, key="contended"))
    assert isinstance(result, StaleWriteError)
    assert shard.uow.begun - begun == InventoryService.attempts
    assert "contended" not in shard.uow.inner.operations
    assert shard.rows[sku].reserved == 0


async def test_a_failed_commit_drops_the_rows_so_they_are_read_again(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=5))
    shard.uow.failing_commits = 2  # the writer tries once more on a fresh connection
    (failed,) = await shard.apply(move(sku, "reserve", 1, key="lost"))
    assert isinstance(failed, StorageUnavailableError)
    assert sku not in shard.service.entities
    assert "lost" not in shard.uow.inner.operations
    assert shard.rows[sku].reserved == 0
    shard.rows[sku] = replace(shard.rows[sku], available=50, version=2)  # changed meanwhile
    assert await shard.value(move(sku, "reserve", 1, key="lost")) == {
        "available": 49,
        "reserved": 1,
    }
    assert shard.rows[sku].version == 3


async def test_a_connection_lost_once_is_tried_again_and_applied_once(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=5))
    shard.uow.failing_commits = 1
    begun = shard.uow.begun
    assert await shard.value(move(sku, "reserve", 2, key="again")) == {
        "available": 3,
        "reserved": 2,
    }
    assert shard.uow.begun - begun == 2
    assert shard.rows[sku].reserved == 2


async def test_a_commit_that_went_through_before_the_connection_was_lost_is_replayed(
    shard: Shard,
) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=5))
    shard.uow.lost_commits = 1
    (outcome,) = await shard.apply(move(sku, "reserve", 2, key="lost-reply"))
    assert isinstance(outcome, Outcome) and outcome.value == {"available": 3, "reserved": 2}
    assert outcome.replayed  # answered from the operations log, not applied again
    assert shard.rows[sku].reserved == 2
    assert shard.rows[sku].available == 3


async def test_a_failed_batch_answers_every_command_in_it(shard: Shard) -> None:
    skus = [owned_sku(0, nth=i) for i in range(3)]
    await shard.apply(*(create(s) for s in skus))
    shard.uow.failing_commits = 2  # the writer tries once more on a fresh connection
    results = await shard.apply(*(move(s, "reserve", 1) for s in skus))
    assert all(isinstance(r, StorageUnavailableError) for r in results)
    assert not any(s in shard.service.entities for s in skus)


async def test_a_key_of_another_shard_is_refused_unrecorded(shard: Shard) -> None:
    theirs, mine = owned_sku(1), owned_sku(0)
    wrong, right = await shard.apply(create(theirs, key="theirs"), create(mine, key="mine"))
    assert isinstance(wrong, WrongShardError)
    assert (wrong.key, wrong.shard, wrong.shards) == (theirs, 0, 2)
    assert isinstance(right, Outcome) and right.refusal is None
    assert set(shard.uow.inner.operations) == {"mine"}
    assert set(shard.rows) == {mine}


async def test_warm_loads_only_the_shards_own_products() -> None:
    first = Shard(0)
    second = Shard(1, uow=first.uow)
    mine, theirs = owned_sku(0, "A"), owned_sku(1, "B")
    await first.apply(create(mine))
    await second.apply(create(theirs))
    restarted = Shard(0, uow=first.uow)
    assert await restarted.service.warm() == 1
    assert set(restarted.service.entities) == {mine}


async def test_refusals_change_no_stock_but_prove_the_row_they_read(shard: Shard) -> None:
    sku = owned_sku(0)
    await shard.apply(create(sku, stock=1))
    before = shard.rows[sku]
    await shard.apply(move(sku, "reserve", 2), move(owned_sku(0, "X"), "restock", 1))
    after = shard.rows[sku]
    assert (after.available, after.reserved, after.name, after.price) == (1, 0, "Tea", 100)
    assert after.version == before.version + 1  # stored unchanged, under a version check


async def test_a_cache_that_fails_does_not_fail_the_command() -> None:
    class BrokenCache(FakeProductCache):
        async def invalidate(self, skus: object) -> None:
            raise StorageError("cache refused")  # not retryable: logged, not retried

    shard = Shard(cache=BrokenCache())
    sku = owned_sku(0)
    assert (await shard.value(create(sku)))["sku"] == sku
    assert shard.rows[sku].available == 7


async def test_drained_returns_once_queued_commands_are_committed(shard: Shard) -> None:
    sku = owned_sku(0)
    pending = asyncio.ensure_future(shard.apply(create(sku), move(sku, "reserve", 1)))
    await asyncio.sleep(0)  # let the call queue its commands (no time passes)
    await shard.service.drained()
    assert shard.rows[sku].reserved == 1
    await pending
