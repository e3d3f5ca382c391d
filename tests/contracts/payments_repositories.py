"""The contracts of the payments ports (wallets, ledger, operation log): fakes and PostgreSQL.

Every test makes its own users, wallets and operation keys, so it neither sees nor disturbs
other rows of a shared database.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import ConflictError, StaleWriteError
from storage.ports import UnitOfWorkFactory
from storage.records import EventRecord, LedgerEntryRecord, OperationRecord, WalletRecord
from tests.contracts.auth_repositories import user

LATER = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


async def add_wallets(uow: UnitOfWorkFactory, count: int = 1) -> list[WalletRecord]:
    """``count`` new users, each with the empty wallet registration gives them."""
    async with uow() as tx:
        wallets = []
        for _ in range(count):
            added = await tx.users.add(user())
            wallets.append(await tx.wallets.add(added.id))
        await tx.commit()
    return wallets


def movement(
    wallet: uuid.UUID, amount: int, balance_after: int, kind: str = "credit"
) -> tuple[LedgerEntryRecord, LedgerEntryRecord]:
    """A movement's two entries: the wallet's side and the system account's."""
    movement_id = uuid.uuid4()
    reference = f"ref-{movement_id.hex[:8]}"
    return (
        LedgerEntryRecord(
            uuid.uuid4(), movement_id, "wallet", wallet, amount, balance_after, kind, reference
        ),
        LedgerEntryRecord(
            uuid.uuid4(), movement_id, "system:funding", None, -amount, None, kind, reference
        ),
    )


def sort_wallets(rows: list[WalletRecord]) -> list[WalletRecord]:
    return sorted(rows, key=lambda w: w.user_id)


class WalletRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def test_new_wallet_is_empty_and_read_back(self, uow: UnitOfWorkFactory) -> None:
        (added,) = await add_wallets(uow)
        async with uow() as tx:
            got = await tx.wallets.get(added.user_id)
        assert got == added
        assert (added.balance, added.version) == (0, 1)
        assert added.updated_at > datetime.now(UTC) - timedelta(minutes=5)  # set by storage

    async def test_second_wallet_of_a_user_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        (added,) = await add_wallets(uow)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.wallets.add(added.user_id)
                await tx.commit()

    async def test_wallet_of_an_unknown_user_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.wallets.add(uuid.uuid4())
                await tx.commit()

    async def test_wallet_added_with_its_user_is_rolled_back_with_it(
        self, uow: UnitOfWorkFactory
    ) -> None:
        new = user()
        async with uow() as tx:
            await tx.users.add(new)
            await tx.wallets.add(new.id)
        async with uow() as tx:
            assert await tx.wallets.get(new.id) is None
            assert await tx.users.get(new.id) is None

    async def test_unknown_wallet_reads_none(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            assert await tx.wallets.get(uuid.uuid4()) is None
            assert await tx.wallets.get_many([uuid.uuid4()]) == []

    async def test_get_many_returns_the_existing_ones_once(self, uow: UnitOfWorkFactory) -> None:
        first, second = await add_wallets(uow, 2)
        async with uow() as tx:
            got = await tx.wallets.get_many(
                [second.user_id, uuid.uuid4(), first.user_id, first.user_id]
            )
            none = await tx.wallets.get_many([])
        assert sort_wallets(got) == sort_wallets([first, second])
        assert none == []

    async def test_update_many_stores_the_next_versions(self, uow: UnitOfWorkFactory) -> None:
        first, second = await add_wallets(uow, 2)
        changed = [
            replace(first, balance=500, version=2, updated_at=LATER),
            replace(second, balance=7, version=2, updated_at=LATER),
        ]
        async with uow() as tx:
            stored = await tx.wallets.update_many(changed)
            await tx.commit()
        async with uow() as tx:
            got = await tx.wallets.get_many([first.user_id, second.user_id])
        assert sort_wallets(stored) == sort_wallets(got) == sort_wallets(changed)

    @pytest.mark.parametrize("version", [1, 3])
    async def test_update_many_with_another_version_is_stale_and_changes_nothing(
        self, uow: UnitOfWorkFactory, version: int
    ) -> None:
        good, bad = await add_wallets(uow, 2)
        with pytest.raises(StaleWriteError):
            async with uow() as tx:
                await tx.wallets.update_many(
                    [replace(good, balance=5, version=2), replace(bad, balance=5, version=version)]
                )
                await tx.commit()
        async with uow() as tx:
            got = await tx.wallets.get_many([good.user_id, bad.user_id])
        assert sort_wallets(got) == sort_wallets([good, bad])

    async def test_update_many_of_an_unknown_wallet_is_stale(self, uow: UnitOfWorkFactory) -> None:
        with pytest.raises(StaleWriteError):
            async with uow() as tx:
                await tx.wallets.update_many([WalletRecord(uuid.uuid4(), 5, 2, LATER)])

    async def test_update_many_of_one_wallet_twice_is_stale(self, uow: UnitOfWorkFactory) -> None:
        (added,) = await add_wallets(uow)
        with pytest.raises(StaleWriteError):
            async with uow() as tx:
                await tx.wallets.update_many(
                    [replace(added, balance=1, version=2), replace(added, balance=2, version=2)]
                )

    async def test_a_negative_balance_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        (added,) = await add_wallets(uow)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.wallets.update_many([replace(added, balance=-1, version=2)])
                await tx.commit()
        async with uow() as tx:
            assert await tx.wallets.get(added.user_id) == added

    async def test_update_many_of_nothing_stores_nothing(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            assert await tx.wallets.update_many([]) == []

    async def test_uncommitted_update_is_rolled_back(self, uow: UnitOfWorkFactory) -> None:
        (added,) = await add_wallets(uow)
        async with uow() as tx:
            await tx.wallets.update_many([replace(added, balance=9, version=2)])
        async with uow() as tx:
            assert await tx.wallets.get(added.user_id) == added


class LedgerRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def test_appended_entries_are_read_back_with_seq_and_time(
        self, uow: UnitOfWorkFactory
    ) -> None:
        (wallet,) = await add_wallets(uow)
        mine, system = movement(wallet.user_id, 250, 250)
        before = datetime.now(UTC) - timedelta(minutes=5)
        async with uow() as tx:
            await tx.ledger.append([mine, system])
            await tx.commit()
        async with uow() as tx:
            (got,), after = await tx.ledger.of_wallet(wallet.user_id, None, 10)
        assert got == replace(mine, created_at=got.created_at, seq=got.seq)
        assert got.seq is not None and got.created_at is not None
        assert got.created_at > before
        assert after is None

    async def test_only_the_wallets_own_side_is_listed(self, uow: UnitOfWorkFactory) -> None:
        mine, other = await add_wallets(uow, 2)
        async with uow() as tx:
            await tx.ledger.append([*movement(mine.user_id, 5, 5), *movement(other.user_id, 7, 7)])
            await tx.commit()
        async with uow() as tx:
            listed, _ = await tx.ledger.of_wallet(mine.user_id, None, 10)
        assert [(e.wallet_id, e.amount, e.account) for e in listed] == [(mine.user_id, 5, "wallet")]

    async def test_entries_are_listed_newest_first_in_the_order_appended(
        self, uow: UnitOfWorkFactory
    ) -> None:
        (wallet,) = await add_wallets(uow)
        amounts = [10, -3, 4]
        balances = [10, 7, 11]
        async with uow() as tx:
            await tx.ledger.append(movement(wallet.user_id, amounts[0], balances[0]))
            await tx.commit()
        async with uow() as tx:
            await tx.ledger.append(
                [
                    e
                    for a, b in zip(amounts[1:], balances[1:], strict=True)
                    for e in movement(wallet.user_id, a, b, "debit" if a < 0 else "credit")
                ]
            )
            await tx.commit()
        async with uow() as tx:
            listed, after = await tx.ledger.of_wallet(wallet.user_id, None, 10)
        assert [e.amount for e in listed] == amounts[::-1]
        assert [e.balance_after for e in listed] == balances[::-1]
        seqs = [e.seq or 0 for e in listed]
        assert seqs == sorted(seqs, reverse=True) and all(seqs)
        assert after is None

    async def test_pages_continue_before_the_cursor_without_gaps(
        self, uow: UnitOfWorkFactory
    ) -> None:
        (wallet,) = await add_wallets(uow)
        async with uow() as tx:
            for i in range(1, 6):
                await tx.ledger.append(movement(wallet.user_id, i, i * (i + 1) // 2))
            await tx.commit()
        pages: list[list[int]] = []
        before: int | None = None
        async with uow() as tx:
            while len(pages) < 5:
                page, before = await tx.ledger.of_wallet(wallet.user_id, before, 2)
                pages.append([e.amount for e in page])
                if before is None:
                    break
        assert pages == [[5, 4], [3, 2], [1]]

    async def test_a_full_last_page_has_no_cursor(self, uow: UnitOfWorkFactory) -> None:
        (wallet,) = await add_wallets(uow)
        async with uow() as tx:
            await tx.ledger.append(
                [*movement(wallet.user_id, 1, 1), *movement(wallet.user_id, 2, 3)]
            )
            await tx.commit()
        async with uow() as tx:
            page, before = await tx.ledger.of_wallet(wallet.user_id, None, 2)
        assert [e.amount for e in page] == [2, 1]
        assert before is None

    async def test_a_wallet_without_entries_lists_nothing(self, uow: UnitOfWorkFactory) -> None:
        (wallet,) = await add_wallets(uow)
        async with uow() as tx:
            assert await tx.ledger.of_wallet(wallet.user_id, None, 10) == ([], None)
            assert await tx.ledger.of_wallet(uuid.uuid4(), None, 10) == ([], None)

    async def test_appending_nothing_is_allowed(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            await tx.ledger.append([])
            await tx.commit()

    async def test_uncommitted_entries_are_rolled_back(self, uow: UnitOfWorkFactory) -> None:
        (wallet,) = await add_wallets(uow)
        async with uow() as tx:
            await tx.ledger.append(movement(wallet.user_id, 5, 5))
        async with uow() as tx:
            assert await tx.ledger.of_wallet(wallet.user_id, None, 10) == ([], None)

    async def test_a_zero_amount_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        (wallet,) = await add_wallets(uow)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.ledger.append(movement(wallet.user_id, 0, 0))

    async def test_a_wallet_side_without_balance_is_a_conflict(
        self, uow: UnitOfWorkFactory
    ) -> None:
        (wallet,) = await add_wallets(uow)
        mine, system = movement(wallet.user_id, 5, 5)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.ledger.append([replace(mine, balance_after=None), system])

    async def test_a_system_side_with_a_balance_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        (wallet,) = await add_wallets(uow)
        mine, system = movement(wallet.user_id, 5, 5)
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.ledger.append([mine, replace(system, balance_after=0)])

    async def test_an_entry_of_an_unknown_wallet_is_a_conflict(
        self, uow: UnitOfWorkFactory
    ) -> None:
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.ledger.append(movement(uuid.uuid4(), 5, 5))

    async def test_a_duplicate_entry_id_is_a_conflict(self, uow: UnitOfWorkFactory) -> None:
        (wallet,) = await add_wallets(uow)
        mine, system = movement(wallet.user_id, 5, 5)
        async with uow() as tx:
            await tx.ledger.append([mine, system])
            await tx.commit()
        with pytest.raises(ConflictError):
            async with uow() as tx:
                await tx.ledger.append([replace(mine, movement_id=uuid.uuid4())])


class OperationLogContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    @pytest.fixture
    def key(self) -> str:
        return f"test:{uuid.uuid4().hex}"

    async def test_recorded_operations_are_read_back_by_key(
        self, uow: UnitOfWorkFactory, key: str
    ) -> None:
        first = OperationRecord(f"{key}:1", "f" * 64, '{"value":{"balance":5}}')
        second = OperationRecord(f"{key}:2", "e" * 64, '{"detail":{},"refused":"x"}')
        async with uow() as tx:
            recorded = await tx.operations.record([first, second])
            await tx.commit()
        async with uow() as tx:
            got = await tx.operations.get_many([first.key, f"{key}:none", second.key])
        assert recorded == {first.key, second.key}
        assert got == {first.key: first, second.key: second}

    async def test_only_new_keys_are_recorded_and_the_first_outcome_stays(
        self, uow: UnitOfWorkFactory, key: str
    ) -> None:
        old = OperationRecord(f"{key}:old", "a" * 64, '{"value":1}')
        async with uow() as tx:
            await tx.operations.record([old])
            await tx.commit()
        again = replace(old, fingerprint="b" * 64, outcome='{"value":2}')
        new = OperationRecord(f"{key}:new", "c" * 64, '{"value":3}')
        async with uow() as tx:
            recorded = await tx.operations.record([again, new])
            await tx.commit()
        async with uow() as tx:
            got = await tx.operations.get_many([old.key, new.key])
        assert recorded == {new.key}
        assert got == {old.key: old, new.key: new}

    async def test_a_key_twice_in_one_call_is_recorded_once(
        self, uow: UnitOfWorkFactory, key: str
    ) -> None:
        first = OperationRecord(key, "a" * 64, '{"value":1}')
        async with uow() as tx:
            recorded = await tx.operations.record([first, replace(first, outcome='{"value":2}')])
            got = await tx.operations.get_many([key])
        assert recorded == {key}
        assert got == {key: first}

    async def test_an_uncommitted_record_is_rolled_back(
        self, uow: UnitOfWorkFactory, key: str
    ) -> None:
        operation = OperationRecord(key, "a" * 64, '{"value":1}')
        async with uow() as tx:
            assert await tx.operations.record([operation]) == {key}
        async with uow() as tx:
            assert await tx.operations.get_many([key]) == {}
            assert await tx.operations.record([operation]) == {key}

    async def stored_events(self, uow: UnitOfWorkFactory, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` the outbox holds (each backend's test class reads its own)."""
        raise NotImplementedError

    async def test_events_are_written_with_their_operations_and_roll_back_with_them(
        self, uow: UnitOfWorkFactory, key: str
    ) -> None:
        def event() -> EventRecord:
            return EventRecord(uuid.uuid4(), "StockRestocked", key, "trace", "{}", LATER)

        kept, dropped = event(), event()
        async with uow() as tx:  # never committed
            await tx.operations.record([OperationRecord(f"{key}:x", "a" * 64, "{}")], [dropped])
        async with uow() as tx:
            operation = OperationRecord(key, "a" * 64, '{"value":1}')
            assert await tx.operations.record([operation], [kept]) == {key}
            await tx.commit()
        assert await self.stored_events(uow, [kept.id, dropped.id]) == {kept.id}

    async def test_events_without_operations_are_still_written(
        self, uow: UnitOfWorkFactory, key: str
    ) -> None:
        alone = EventRecord(uuid.uuid4(), "StockRestocked", key, "trace", "{}", LATER)
        async with uow() as tx:
            assert await tx.operations.record([], [alone]) == set()
            await tx.commit()
        assert await self.stored_events(uow, [alone.id]) == {alone.id}

    async def test_recording_nothing_records_nothing(self, uow: UnitOfWorkFactory) -> None:
        async with uow() as tx:
            assert await tx.operations.record([]) == set()
            assert await tx.operations.get_many([]) == {}
