"""The wallet shard: money moves in batches, each movement two ledger entries summing to zero."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import replace

import pytest

from actors._ops import (
    IdempotencyConflictError,
    Operation,
    OperationInProgressError,
    Outcome,
    WrongShardError,
)
from actors.payments.errors import BalanceLimitError, InsufficientFundsError, UnknownWalletError
from actors.payments.model import MAX_BALANCE, MoneyCommand
from actors.payments.service import WalletService
from actors.placement import Partitioning
from storage.errors import StorageUnavailableError
from storage.records import LedgerEntryRecord, WalletRecord
from tests.contracts.auth_repositories import user
from tests.fakes import CountingUnitOfWorkFactory

LAYOUT = Partitioning(partitions=8, shards=2)


def owned_ids(shard: int) -> list[uuid.UUID]:
    """Wallet ids (made up, fixed) that ``shard`` owns."""
    ids = (uuid.UUID(int=i) for i in range(1, 10_000))
    return [u for u in ids if LAYOUT.owner_of(str(u)) == shard][:20]


MINE, THEIRS = owned_ids(0), owned_ids(1)


def money(
    wallet: uuid.UUID, kind: str, amount: int, key: str | None = None, reference: str = "test"
) -> MoneyCommand:
    request = {"wallet": str(wallet), "kind": kind, "amount": amount, "reference": reference}
    op = Operation.of(key, request) if key else Operation.once(request)
    return MoneyCommand(op, wallet, kind, amount, reference)


class Shard:
    """A wallet shard on a counting fake unit of work, with helpers to drive it."""

    def __init__(self, shard: int = 0, uow: CountingUnitOfWorkFactory | None = None) -> None:
        self.uow = uow or CountingUnitOfWorkFactory()
        self.service = WalletService(shard, LAYOUT, self.uow)

    async def open(self, *wallet_ids: uuid.UUID) -> None:
        """Register users with these ids; each gets its empty wallet."""
        async with self.uow() as tx:
            for wallet_id in wallet_ids:
                await tx.users.add(replace(user(), id=wallet_id))
                await tx.wallets.add(wallet_id)
            await tx.commit()

    def wallet(self, wallet_id: uuid.UUID) -> WalletRecord:
        return self.uow.inner.wallets[wallet_id]

    def entries(self, wallet_id: uuid.UUID | None = None) -> list[LedgerEntryRecord]:
        """Ledger entries in seq order: all, or the given wallet's side."""
        rows = sorted(self.uow.inner.ledger.values(), key=lambda e: e.seq or 0)
        return [e for e in rows if wallet_id is None or e.wallet_id == wallet_id]

    async def apply(self, *commands: MoneyCommand) -> list[Outcome | Exception]:
        return await self.service.submit(commands)

    async def outcome(self, command: MoneyCommand) -> Outcome:
        (result,) = await self.apply(command)
        assert isinstance(result, Outcome), result
        return result

    async def concurrently(self, commands: list[MoneyCommand]) -> list[Outcome | Exception]:
        results = await asyncio.gather(*(self.service.submit([c]) for c in commands))
        return [r for (r,) in results]


@pytest.fixture
async def shard() -> Shard:
    opened = Shard()
    await opened.open(*MINE[:4])
    return opened


def assert_ledger_balances(shard: Shard) -> None:
    """Every movement is two entries summing to zero; balances follow the entries."""
    by_movement: dict[uuid.UUID, list[LedgerEntryRecord]] = defaultdict(list)
    for entry in shard.entries():
        by_movement[entry.movement_id].append(entry)
    for pair in by_movement.values():
        assert len(pair) == 2
        assert sum(e.amount for e in pair) == 0
        assert sorted(e.wallet_id is None for e in pair) == [False, True]
    for wallet_id, wallet in shard.uow.inner.wallets.items():
        running = 0
        for entry in shard.entries(wallet_id):
            running += entry.amount
            assert entry.balance_after == running >= 0
        assert wallet.balance == running


async def test_a_credit_moves_money_in_from_funding(shard: Shard) -> None:
    wallet = MINE[0]
    outcome = await shard.outcome(money(wallet, "credit", 250, reference="  welcome bonus "))
    assert outcome.value is not None
    assert outcome.value["balance"] == 250
    mine, funding = sorted(shard.entries(), key=lambda e: e.account != "wallet")
    assert str(mine.movement_id) == str(funding.movement_id) == outcome.value["movement_id"]
    assert (mine.account, mine.wallet_id, mine.amount, mine.balance_after) == (
        "wallet",
        wallet,
        250,
        250,
    )
    assert (funding.account, funding.wallet_id, funding.amount, funding.balance_after) == (
        "system:funding",
        None,
        -250,
        None,
    )
    assert {mine.kind, funding.kind} == {"credit"}
    assert {mine.reference, funding.reference} == {"welcome bonus"}
    assert (shard.wallet(wallet).balance, shard.wallet(wallet).version) == (250, 2)


@pytest.mark.parametrize(("kind", "signed"), [("debit", -40), ("refund", 40)])
async def test_debits_and_refunds_move_money_against_revenue(
    shard: Shard, kind: str, signed: int
) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 100))
    outcome = await shard.outcome(money(wallet, kind, 40))
    assert outcome.value is not None and outcome.value["balance"] == 100 + signed
    mine, revenue = shard.entries()[-2:]
    assert (mine.wallet_id, mine.amount, mine.balance_after) == (wallet, signed, 100 + signed)
    assert (revenue.account, revenue.amount, revenue.kind) == ("system:revenue", -signed, kind)
    assert_ledger_balances(shard)


async def test_concurrent_movements_keep_the_ledger_balanced(shard: Shard) -> None:
    credits = [money(MINE[i % 4], "credit", 10 + i) for i in range(40)]
    debits = [money(MINE[i % 4], "debit", 25) for i in range(40)]
    refunds = [money(MINE[i % 4], "refund", 3) for i in range(8)]
    await shard.concurrently(credits)
    results = await shard.concurrently(
        [c for pair in zip(debits, refunds, strict=False) for c in pair]
    )
    results += await shard.concurrently(debits[8:])
    assert all(isinstance(r, Outcome) for r in results)
    assert_ledger_balances(shard)


async def test_debits_never_take_a_balance_below_zero(shard: Shard) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 100))
    results = await shard.concurrently([money(wallet, "debit", 7) for _ in range(30)])
    applied = [r for r in results if isinstance(r, Outcome) and r.refusal is None]
    refused = [r for r in results if isinstance(r, Outcome) and r.refusal is not None]
    assert (len(applied), len(refused)) == (14, 16)
    assert all(isinstance(r.refusal, InsufficientFundsError) for r in refused)
    assert shard.wallet(wallet).balance == 2
    assert_ledger_balances(shard)


async def test_insufficient_funds_is_recorded_and_replayed(shard: Shard) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 10))
    refused = await shard.outcome(money(wallet, "debit", 25, key="order-1:debit"))
    assert isinstance(refused.refusal, InsufficientFundsError)
    assert refused.refusal.detail == {"wallet_id": str(wallet), "balance": 10, "requested": 25}
    await shard.apply(money(wallet, "credit", 100))
    again = await shard.outcome(money(wallet, "debit", 25, key="order-1:debit"))
    assert again.replayed and isinstance(again.refusal, InsufficientFundsError)
    assert shard.wallet(wallet).balance == 110
    assert len(shard.entries()) == 4


async def test_an_unknown_wallet_is_recorded_and_replayed(shard: Shard) -> None:
    nobody = MINE[10]
    refused = await shard.outcome(money(nobody, "credit", 5, key="early"))
    assert isinstance(refused.refusal, UnknownWalletError)
    assert refused.refusal.wallet_id == str(nobody)
    await shard.open(nobody)
    again = await shard.outcome(money(nobody, "credit", 5, key="early"))
    assert again.replayed and isinstance(again.refusal, UnknownWalletError)
    assert shard.wallet(nobody).balance == 0
    assert shard.entries() == []


async def test_a_credit_past_the_largest_balance_is_refused(shard: Shard) -> None:
    wallet = MINE[0]
    shard.uow.inner.wallets[wallet] = replace(shard.wallet(wallet), balance=MAX_BALANCE - 1)
    refused = await shard.outcome(money(wallet, "credit", 2))
    assert isinstance(refused.refusal, BalanceLimitError)
    assert shard.wallet(wallet).balance == MAX_BALANCE - 1
    assert shard.entries() == []


async def test_concurrent_movements_share_transactions(shard: Shard) -> None:
    begun = shard.uow.begun
    results = await shard.concurrently([money(MINE[i % 4], "credit", 1) for i in range(40)])
    assert all(isinstance(r, Outcome) and r.refusal is None for r in results)
    assert shard.uow.begun - begun <= 2  # not 40
    assert [shard.wallet(w).balance for w in MINE[:4]] == [10, 10, 10, 10]
    assert len(shard.entries()) == 80


async def test_the_same_key_twice_moves_money_once(shard: Shard) -> None:
    wallet = MINE[0]
    first = await shard.outcome(money(wallet, "credit", 30, key="http:u:abc"))
    again = await shard.outcome(money(wallet, "credit", 30, key="http:u:abc"))
    assert again.replayed and again.value == first.value
    assert shard.wallet(wallet).balance == 30
    assert len(shard.entries()) == 2


async def test_the_same_key_for_another_amount_is_a_conflict(shard: Shard) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 30, key="http:u:abc"))
    (result,) = await shard.apply(money(wallet, "credit", 31, key="http:u:abc"))
    assert isinstance(result, IdempotencyConflictError)
    assert shard.wallet(wallet).balance == 30


async def test_a_key_twice_in_one_batch_is_in_progress_for_the_second(shard: Shard) -> None:
    wallet = MINE[0]
    first, second = await shard.apply(
        money(wallet, "credit", 30, key="dup"), money(wallet, "credit", 30, key="dup")
    )
    assert isinstance(first, Outcome) and first.refusal is None
    assert isinstance(second, OperationInProgressError)
    assert shard.wallet(wallet).balance == 30


async def test_a_wallet_changed_behind_the_shard_is_reloaded_and_moved_once(
    shard: Shard,
) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 10))
    shard.uow.inner.wallets[wallet] = replace(shard.wallet(wallet), balance=500, version=7)
    outcome = await shard.outcome(money(wallet, "debit", 5, key="after-race"))
    assert outcome.value is not None and outcome.value["balance"] == 495
    assert (shard.wallet(wallet).balance, shard.wallet(wallet).version) == (495, 8)
    debit = shard.entries(wallet)[-1]
    assert (debit.amount, debit.balance_after) == (-5, 495)
    assert len(shard.entries()) == 4
    assert shard.service.entities[wallet] == shard.wallet(wallet)


async def test_a_refusal_is_not_decided_on_a_wallet_changed_behind_the_shard(
    shard: Shard,
) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 10))
    shard.uow.inner.wallets[wallet] = replace(shard.wallet(wallet), balance=500, version=7)
    outcome = await shard.outcome(money(wallet, "debit", 100, key="after-race"))
    assert outcome.refusal is None
    assert shard.wallet(wallet).balance == 400


async def test_a_failed_commit_drops_the_wallets_so_they_are_read_again(shard: Shard) -> None:
    wallet = MINE[0]
    await shard.apply(money(wallet, "credit", 10))
    shard.uow.failing_commits = 2  # the writer tries once more on a fresh connection
    (failed,) = await shard.apply(money(wallet, "credit", 5, key="lost"))
    assert isinstance(failed, StorageUnavailableError)
    assert wallet not in shard.service.entities
    assert "lost" not in shard.uow.inner.operations
    assert len(shard.entries()) == 2
    outcome = await shard.outcome(money(wallet, "credit", 5, key="lost"))
    assert outcome.value is not None and outcome.value["balance"] == 15
    assert_ledger_balances(shard)


async def test_a_wallet_of_another_shard_is_refused_unrecorded(shard: Shard) -> None:
    await shard.open(THEIRS[0])
    wrong, right = await shard.apply(
        money(THEIRS[0], "credit", 5, key="theirs"), money(MINE[0], "credit", 5, key="mine")
    )
    assert isinstance(wrong, WrongShardError)
    assert (wrong.key, wrong.shard, wrong.shards) == (str(THEIRS[0]), 0, 2)
    assert isinstance(right, Outcome) and right.refusal is None
    assert set(shard.uow.inner.operations) == {"mine"}
    assert shard.wallet(THEIRS[0]).balance == 0
    assert [e.wallet_id for e in shard.entries() if e.wallet_id] == [MINE[0]]
