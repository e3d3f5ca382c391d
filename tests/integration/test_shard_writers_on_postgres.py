"""The shard writers on PostgreSQL: group commit, replay and the version check, for real."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from actors._ops import Operation, Outcome
from actors.inventory.errors import OutOfStockError
from actors.inventory.model import CreateProduct, NewProduct, StockCommand
from actors.inventory.service import InventoryService
from actors.payments.errors import InsufficientFundsError
from actors.payments.model import MoneyCommand
from actors.payments.service import WalletService
from actors.placement import Partitioning
from storage.connections import Connections
from storage.products import SqlUnitOfWorkFactory
from tests.contracts.payments_repositories import add_wallets
from tests.fakes import FakeProductCache

ONE_SHARD = Partitioning(partitions=16, shards=1)  # shard 0 owns every key


@pytest.fixture
def uow(connections: Connections) -> SqlUnitOfWorkFactory:
    return SqlUnitOfWorkFactory(connections.engine)


def money(wallet: uuid.UUID, kind: str, amount: int, key: str | None = None) -> MoneyCommand:
    request = {"wallet": str(wallet), "kind": kind, "amount": amount}
    op = Operation.of(key, request) if key else Operation.once(request)
    return MoneyCommand(op, wallet, kind, amount, "integration")


def stock(sku: str, kind: str, quantity: int, key: str | None = None) -> StockCommand:
    request = {"sku": sku, "kind": kind, "quantity": quantity}
    op = Operation.of(key, request) if key else Operation.once(request)
    return StockCommand(op, sku, kind, quantity)


async def each(writer: Any, commands: Sequence[Any]) -> list[Outcome | Exception]:
    """Each command in its own call, all at once."""
    results = await asyncio.gather(*(writer.submit([c]) for c in commands))
    return [r for (r,) in results]


def applied(results: list[Outcome | Exception]) -> int:
    assert all(isinstance(r, Outcome) for r in results), results
    return sum(1 for r in results if isinstance(r, Outcome) and r.refusal is None)


async def test_concurrent_movements_keep_balances_equal_to_the_ledger(
    uow: SqlUnitOfWorkFactory,
) -> None:
    wallets = [w.user_id for w in await add_wallets(uow, 3)]
    service = WalletService(0, ONE_SHARD, uow)
    assert applied(await each(service, [money(wallets[i % 3], "credit", 10) for i in range(30)]))
    debits = await each(service, [money(wallets[i % 3], "debit", 7) for i in range(60)])
    assert applied(debits) == 3 * 14  # 100 each: 14 debits of 7, then insufficient funds
    async with uow() as tx:
        stored = {w.user_id: w for w in await tx.wallets.get_many(wallets)}
        ledgers = {w: await tx.ledger.of_wallet(w, None, 100) for w in wallets}
    for wallet_id, (entries, more) in ledgers.items():
        assert more is None
        running = 0
        for entry in reversed(entries):  # oldest first
            running += entry.amount
            assert entry.balance_after == running >= 0
        assert stored[wallet_id].balance == running == 2


async def test_a_repeated_key_is_replayed_by_a_restarted_shard(uow: SqlUnitOfWorkFactory) -> None:
    (wallet,) = [w.user_id for w in await add_wallets(uow)]
    key = f"test:{uuid.uuid4().hex}"
    (first,) = await WalletService(0, ONE_SHARD, uow).submit([money(wallet, "credit", 25, key)])
    (again,) = await WalletService(0, ONE_SHARD, uow).submit([money(wallet, "credit", 25, key)])
    assert isinstance(first, Outcome) and isinstance(again, Outcome)
    assert again.replayed and again.value == first.value
    async with uow() as tx:
        stored = await tx.wallets.get(wallet)
        entries, _ = await tx.ledger.of_wallet(wallet, None, 10)
    assert stored is not None and stored.balance == 25
    assert len(entries) == 1


async def test_a_refusal_is_stored_and_replayed(uow: SqlUnitOfWorkFactory) -> None:
    (wallet,) = [w.user_id for w in await add_wallets(uow)]
    key = f"test:{uuid.uuid4().hex}"
    service = WalletService(0, ONE_SHARD, uow)
    (refused,) = await service.submit([money(wallet, "debit", 5, key)])
    await service.submit([money(wallet, "credit", 50)])
    (again,) = await WalletService(0, ONE_SHARD, uow).submit([money(wallet, "debit", 5, key)])
    assert isinstance(refused, Outcome) and isinstance(refused.refusal, InsufficientFundsError)
    assert isinstance(again, Outcome) and again.replayed
    assert isinstance(again.refusal, InsufficientFundsError)


async def test_a_wallet_changed_by_another_writer_is_reloaded(uow: SqlUnitOfWorkFactory) -> None:
    (wallet,) = [w.user_id for w in await add_wallets(uow)]
    service = WalletService(0, ONE_SHARD, uow)
    await service.submit([money(wallet, "credit", 10)])
    async with uow() as tx:  # another writer, behind the shard's back
        (current,) = await tx.wallets.get_many([wallet])
        await tx.wallets.update_many([replace(current, balance=90, version=current.version + 1)])
        await tx.commit()
    (result,) = await service.submit([money(wallet, "credit", 5)])
    assert isinstance(result, Outcome) and result.value is not None
    assert result.value["balance"] == 95
    async with uow() as tx:
        stored = await tx.wallets.get(wallet)
    assert stored is not None and (stored.balance, stored.version) == (95, current.version + 2)


async def test_stock_moves_in_batches_and_refuses_past_zero(uow: SqlUnitOfWorkFactory) -> None:
    sku = f"T{uuid.uuid4().hex[:12]}"
    cache = FakeProductCache()
    service = InventoryService(0, ONE_SHARD, uow, cache)
    create = CreateProduct(Operation.once(sku), NewProduct(sku, "Tea", 100, "USD", 10))
    (created,) = await service.submit([create])
    assert isinstance(created, Outcome) and created.refusal is None
    results = await each(service, [stock(sku, "reserve", 1) for _ in range(15)])
    assert applied(results) == 10
    assert all(
        isinstance(r.refusal, OutOfStockError)
        for r in results
        if isinstance(r, Outcome) and r.refusal
    )
    async with uow() as tx:
        stored = await tx.products.get(sku)
    assert stored is not None and (stored.available, stored.reserved) == (0, 10)
    assert stored.version <= 3  # created, then one or two batches
    assert sku in cache.invalidated
