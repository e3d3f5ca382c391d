"""Payments use cases for one shard: the single writer of its partitions' wallets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from actors._ops import Draft, Outcome, WrongShardError
from actors._writer import ShardWriter
from actors.payments.errors import UnknownWalletError
from actors.payments.model import MONEY_EVENTS, MoneyCommand, entries, money_event, move
from actors.placement import Partitioning
from storage.ports import UnitOfWork, UnitOfWorkFactory
from storage.records import LedgerEntryRecord, WalletRecord


class WalletService(ShardWriter[UUID, WalletRecord, MoneyCommand]):
    """Owns the wallets of one shard's partitions; read into memory on first use.

    Each committed movement changes the wallet's running total and appends its two ledger
    entries in the same transaction, so the balance always equals the sum of the entries.

    Args:
        shard: this shard's index.
        partitioning: the partition layout shared by every process.
        uow: makes a unit of work (one PostgreSQL transaction) per batch.
        max_batch: the most commands committed in one transaction.
    """

    kind = "wallets"

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        uow: UnitOfWorkFactory,
        max_batch: int = 512,
    ) -> None:
        super().__init__(uow, max_batch)
        self.shard = shard
        self._partitioning = partitioning

    def owns(self, key: UUID) -> bool:
        """Whether this shard owns ``key``."""
        return self._partitioning.owner_of(str(key)) == self.shard

    def key_of(self, command: MoneyCommand) -> UUID:
        """The wallet ``command`` changes."""
        return command.wallet_id

    def entity_key(self, entity: WalletRecord) -> UUID:
        """A wallet's user id."""
        return entity.user_id

    async def load(self, uow: UnitOfWork, keys: Sequence[UUID]) -> list[WalletRecord]:
        """The stored wallets among ``keys``."""
        return await uow.wallets.get_many(keys)

    def decide(self, command: MoneyCommand, draft: Draft) -> Outcome:
        """Apply one movement to the batch's draft.

        Raises:
            WrongShardError: this shard does not own the wallet.
            UnknownWalletError: no such wallet.
            InsufficientFundsError, BalanceLimitError: the money rules say no.
        """
        key = str(command.wallet_id)
        if not self.owns(command.wallet_id):
            raise WrongShardError(key, self.shard, self._partitioning.shards)
        wallet: WalletRecord | None = draft.get(command.wallet_id)
        if wallet is None:
            raise UnknownWalletError(key)
        after = move(wallet, command, draft.now)
        movement = entries(after, command)
        draft.put(command.wallet_id, after)
        draft.rows.extend(movement)
        draft.emit(command.op, MONEY_EVENTS[command.kind], key, money_event(command, after))
        movement_id = str(movement[0].movement_id)
        return Outcome(value={"balance": after.balance, "movement_id": movement_id})

    async def store(
        self,
        uow: UnitOfWork,
        created: list[WalletRecord],
        updated: list[WalletRecord],
        rows: list[Any],
    ) -> list[WalletRecord]:
        """Compare-and-set the changed wallets and append the batch's ledger entries."""
        assert not created, "wallets are created with their user, not by movements"
        stored = await uow.wallets.update_many(updated) if updated else []
        ledger: list[LedgerEntryRecord] = rows
        if ledger:
            await uow.ledger.append(ledger)
        return stored
