"""PostgreSQL adapters of payments: wallets, the ledger, and the applied-operations log.

Writers hand over whole batches, so each method is one statement for any number of rows
(arrays in, ``unnest`` on the server) rather than one round trip per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage._tables import ledger_entries, operations, wallets
from storage._translate import translated
from storage.errors import StaleWriteError
from storage.outbox import APPEND_SQL, append_params
from storage.records import EventRecord, LedgerEntryRecord, OperationRecord, WalletRecord

_WALLET = (wallets.c.user_id, wallets.c.balance, wallets.c.version, wallets.c.updated_at)
_ENTRY = (
    ledger_entries.c.id,
    ledger_entries.c.movement_id,
    ledger_entries.c.account,
    ledger_entries.c.wallet_id,
    ledger_entries.c.amount,
    ledger_entries.c.balance_after,
    ledger_entries.c.kind,
    ledger_entries.c.reference,
    ledger_entries.c.created_at,
    ledger_entries.c.seq,
)

_UPDATE_WALLETS = text(
    """
    UPDATE wallets AS w
       SET balance = u.balance, version = u.version, updated_at = u.updated_at
      FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), CAST(:versions AS bigint[]),
                  CAST(:updated AS timestamptz[]))
           AS u(user_id, balance, version, updated_at)
     WHERE w.user_id = u.user_id AND w.version = u.version - 1
    RETURNING w.user_id, w.balance, w.version, w.updated_at
    """
)
_APPEND_ENTRIES = text(
    """
    INSERT INTO ledger_entries
           (id, movement_id, account, wallet_id, amount, balance_after, kind, reference)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:movements AS uuid[]),
                         CAST(:accounts AS text[]), CAST(:wallets AS uuid[]),
                         CAST(:amounts AS bigint[]), CAST(:after AS bigint[]),
                         CAST(:kinds AS text[]), CAST(:references AS text[]))
    """
)
_RECORD_SQL = """
    INSERT INTO operations (key, fingerprint, outcome)
    SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:fingerprints AS text[]),
                         CAST(:outcomes AS text[]))
    ON CONFLICT (key) DO NOTHING
    RETURNING key
"""
_RECORD_OPERATIONS = text(_RECORD_SQL)
# The same, with the events of their effects written to the outbox by the same statement.
_RECORD_WITH_EVENTS = text(f"WITH events AS ({APPEND_SQL}) {_RECORD_SQL}")


def _wallet(row: Any) -> WalletRecord:
    return WalletRecord(*row)


class SqlWalletRepository:
    """Wallets in PostgreSQL, on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, user_id: UUID) -> WalletRecord:
        """Create the user's empty wallet.

        Raises:
            ConflictError: the wallet exists already, or the user does not.
        """
        query = wallets.insert().values(user_id=user_id).returning(*_WALLET)
        async with translated():
            return _wallet((await self._conn.execute(query)).one())

    async def get(self, user_id: UUID) -> WalletRecord | None:
        """Return the user's wallet, or ``None`` when there is no such user."""
        found = await self.get_many([user_id])
        return found[0] if found else None

    async def get_many(self, user_ids: Sequence[UUID]) -> list[WalletRecord]:
        """Return the wallets of ``user_ids`` that exist, in no particular order."""
        query = select(*_WALLET).where(wallets.c.user_id.in_(list(user_ids)))
        async with translated():
            return [_wallet(r) for r in (await self._conn.execute(query)).all()]

    async def update_many(self, rows: Sequence[WalletRecord]) -> list[WalletRecord]:
        """Store each row's balance if the stored version is one less than the row's.

        Raises:
            StaleWriteError: some stored row has another version.
        """
        params = {
            "ids": [r.user_id for r in rows],
            "balances": [r.balance for r in rows],
            "versions": [r.version for r in rows],
            "updated": [r.updated_at for r in rows],
        }
        async with translated():
            stored = (await self._conn.execute(_UPDATE_WALLETS, params)).all()
        if len(stored) != len(rows):
            raise StaleWriteError("wallets changed by another writer")
        return [_wallet(r) for r in stored]


class SqlLedgerRepository:
    """The ledger in PostgreSQL: appended to, listed per wallet."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, entries: Sequence[LedgerEntryRecord]) -> None:
        """Add entries; every movement's entries must be in the same call."""
        params = {
            "ids": [e.id for e in entries],
            "movements": [e.movement_id for e in entries],
            "accounts": [e.account for e in entries],
            "wallets": [e.wallet_id for e in entries],
            "amounts": [e.amount for e in entries],
            "after": [e.balance_after for e in entries],
            "kinds": [e.kind for e in entries],
            "references": [e.reference for e in entries],
        }
        async with translated():
            await self._conn.execute(_APPEND_ENTRIES, params)

    async def of_wallet(
        self, wallet_id: UUID, before: int | None, limit: int
    ) -> tuple[list[LedgerEntryRecord], int | None]:
        """A wallet's entries, newest first, older than position ``before``."""
        query = (
            select(*_ENTRY)
            .where(ledger_entries.c.wallet_id == wallet_id)
            .order_by(ledger_entries.c.seq.desc())
            .limit(limit + 1)
        )
        if before is not None:
            query = query.where(ledger_entries.c.seq < before)
        async with translated():
            rows = (await self._conn.execute(query)).all()
        items = [LedgerEntryRecord(**r._mapping) for r in rows[:limit]]
        return items, (items[-1].seq if len(rows) > limit else None)


class SqlOperationLog:
    """Applied operations in PostgreSQL, recorded in the transaction of their effects."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def record(
        self, operations: Sequence[OperationRecord], events: Sequence[EventRecord] = ()
    ) -> set[str]:
        """Record the operations whose keys are new; return the keys this call recorded.

        ``events`` (those the operations' effects publish) go to the outbox in the same
        statement, a round trip less per group commit; known event ids are skipped. The
        caller's transaction decides whether both stay.
        """
        if not operations and not events:
            return set()
        params: dict[str, Any] = {
            "keys": [o.key for o in operations],
            "fingerprints": [o.fingerprint for o in operations],
            "outcomes": [o.outcome for o in operations],
        }
        statement = _RECORD_OPERATIONS
        if events:
            params |= append_params(events)
            statement = _RECORD_WITH_EVENTS
        async with translated():
            rows = (await self._conn.execute(statement, params)).all()
        return {r[0] for r in rows}

    async def get_many(self, keys: Sequence[str]) -> dict[str, OperationRecord]:
        """The recorded operations among ``keys``, by key."""
        query = select(operations.c.key, operations.c.fingerprint, operations.c.outcome).where(
            operations.c.key.in_(list(keys))
        )
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return {r[0]: OperationRecord(*r) for r in rows}
