"""In-memory fakes of the storage ports; they pass the same contract tests as the adapters."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Hashable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

from storage.errors import ConflictError, StaleWriteError, StorageError, StorageUnavailableError
from storage.ports import ThrottleCount
from storage.records import (
    STATUS_RANK,
    AuditRecord,
    DeadLetterRecord,
    EventRecord,
    LedgerEntryRecord,
    MfaState,
    OperationRecord,
    OrderRecord,
    OrderViewRecord,
    Page,
    ProductRecord,
    ProductSalesRecord,
    SagaLogRecord,
    SagaRecord,
    SessionRecord,
    SigningKeyRecord,
    UserRecord,
    UserState,
    WalletRecord,
)

V = TypeVar("V", ProductRecord, WalletRecord)


def compare_and_set(
    table: dict[Any, V],
    rows: Sequence[V],
    key: Callable[[V], Hashable],
    merge: Callable[[V, V], V],
    valid: Callable[[V], bool],
) -> list[V]:
    """What one ``UPDATE ... WHERE version = new - 1 RETURNING`` does, all or nothing.

    ``merge`` takes the stored row and the given one and returns what the update stores;
    a stored row breaking a check constraint is a ``ConflictError``, and fewer matched rows
    than given (a wrong version, an unknown key, a key given twice) a ``StaleWriteError``.
    """
    matched: dict[Hashable, V] = {}
    for row in rows:
        stored = table.get(key(row))
        if stored is not None and key(row) not in matched and stored.version == row.version - 1:
            matched[key(row)] = merge(stored, row)
    if not all(valid(row) for row in matched.values()):
        raise ConflictError("CheckViolation")
    if len(matched) != len(rows):
        raise StaleWriteError("changed by another writer")
    table.update(matched)
    return list(matched.values())


class FakeProductRepository:
    def __init__(self, rows: dict[str, ProductRecord]) -> None:
        self._rows = rows

    async def get(self, sku: str) -> ProductRecord | None:
        return self._rows.get(sku)

    async def list_after(self, after: str | None, limit: int) -> Page[ProductRecord]:
        keys = sorted(k for k in self._rows if after is None or k > after)
        items = tuple(self._rows[k] for k in keys[:limit])
        return Page(items, items[-1].sku if len(keys) > limit else None)

    async def in_partitions(self, partitions: Sequence[int]) -> list[ProductRecord]:
        wanted = set(partitions)
        return [r for r in self._rows.values() if r.partition in wanted]

    async def get_many(self, skus: Sequence[str]) -> list[ProductRecord]:
        return [self._rows[s] for s in dict.fromkeys(skus) if s in self._rows]

    async def add(self, product: ProductRecord) -> ProductRecord:
        if product.sku in self._rows:
            raise ConflictError("UniqueViolation")
        self._rows[product.sku] = product
        return product

    async def update_many(self, rows: Sequence[ProductRecord]) -> list[ProductRecord]:
        return compare_and_set(self._rows, rows, _sku, _merge_product, _valid_product)


def _sku(row: ProductRecord) -> str:
    return row.sku


def _merge_product(stored: ProductRecord, row: ProductRecord) -> ProductRecord:
    # Like the SQL update: currency and partition never change.
    return dataclasses.replace(
        stored,
        name=row.name,
        price=row.price,
        available=row.available,
        reserved=row.reserved,
        version=row.version,
        updated_at=row.updated_at,
    )


def _valid_product(row: ProductRecord) -> bool:
    return row.price > 0 and row.available >= 0 and row.reserved >= 0


class FakeWalletRepository:
    def __init__(self, rows: dict[UUID, WalletRecord], users: dict[UUID, UserRecord]) -> None:
        self._rows = rows
        self._users = users

    async def add(self, user_id: UUID) -> WalletRecord:
        if user_id in self._rows:
            raise ConflictError("UniqueViolation")
        if user_id not in self._users:
            raise ConflictError("ForeignKeyViolation")
        row = self._rows[user_id] = WalletRecord(user_id, 0, 1, datetime.now(UTC))
        return row

    async def get(self, user_id: UUID) -> WalletRecord | None:
        return self._rows.get(user_id)

    async def get_many(self, user_ids: Sequence[UUID]) -> list[WalletRecord]:
        return [self._rows[u] for u in dict.fromkeys(user_ids) if u in self._rows]

    async def update_many(self, rows: Sequence[WalletRecord]) -> list[WalletRecord]:
        return compare_and_set(self._rows, rows, _user_id, _merge_wallet, _valid_wallet)


def _user_id(row: WalletRecord) -> UUID:
    return row.user_id


def _merge_wallet(stored: WalletRecord, row: WalletRecord) -> WalletRecord:
    return dataclasses.replace(
        stored, balance=row.balance, version=row.version, updated_at=row.updated_at
    )


def _valid_wallet(row: WalletRecord) -> bool:
    return row.balance >= 0


class FakeLedgerRepository:
    """Entries by id; like the database, it stamps ``seq`` (never reused) and ``created_at``."""

    def __init__(
        self,
        rows: dict[UUID, LedgerEntryRecord],
        wallets: dict[UUID, WalletRecord],
        sequence: Iterator[int],
    ) -> None:
        self._rows = rows
        self._wallets = wallets
        self._sequence = sequence

    async def append(self, entries: Sequence[LedgerEntryRecord]) -> None:
        now, added = datetime.now(UTC), {}
        for entry in entries:
            if entry.id in self._rows or entry.id in added:
                raise ConflictError("UniqueViolation")
            if entry.amount == 0 or (entry.wallet_id is None) != (entry.balance_after is None):
                raise ConflictError("CheckViolation")
            if entry.wallet_id is not None and entry.wallet_id not in self._wallets:
                raise ConflictError("ForeignKeyViolation")
            added[entry.id] = dataclasses.replace(entry, created_at=now, seq=next(self._sequence))
        self._rows.update(added)

    async def of_wallet(
        self, wallet_id: UUID, before: int | None, limit: int
    ) -> tuple[list[LedgerEntryRecord], int | None]:
        mine = sorted(
            (
                e
                for e in self._rows.values()
                if e.wallet_id == wallet_id and (before is None or _seq(e) < before)
            ),
            key=_seq,
            reverse=True,
        )
        items = mine[:limit]
        return items, (items[-1].seq if len(mine) > limit else None)


def _seq(entry: LedgerEntryRecord) -> int:
    assert entry.seq is not None
    return entry.seq


class FakeOperationLog:
    def __init__(self, rows: dict[str, OperationRecord], outbox: FakeOutbox) -> None:
        self._rows = rows
        self._outbox = outbox

    async def record(
        self, operations: Sequence[OperationRecord], events: Sequence[EventRecord] = ()
    ) -> set[str]:
        await self._outbox.append(events)
        recorded = set()
        for operation in operations:
            if operation.key not in self._rows:  # ON CONFLICT (key) DO NOTHING
                self._rows[operation.key] = operation
                recorded.add(operation.key)
        return recorded

    async def get_many(self, keys: Sequence[str]) -> dict[str, OperationRecord]:
        return {k: self._rows[k] for k in keys if k in self._rows}


class FakeUserRepository:
    def __init__(
        self,
        rows: dict[UUID, UserRecord],
        mfa: dict[UUID, MfaState] | None = None,
        recovery_codes: dict[tuple[UUID, bytes], datetime | None] | None = None,
    ) -> None:
        self._rows = rows
        self._mfa = {} if mfa is None else mfa
        self._codes = {} if recovery_codes is None else recovery_codes

    async def get(self, user_id: UUID) -> UserRecord | None:
        return self._rows.get(user_id)

    async def by_email(self, email: str) -> UserRecord | None:
        return next((u for u in self._rows.values() if u.email == email), None)

    async def add(self, user: UserRecord) -> UserRecord:
        if user.id in self._rows or await self.by_email(user.email) is not None:
            raise ConflictError("UniqueViolation")
        row = dataclasses.replace(
            user, roles=tuple(user.roles), created_at=datetime.now(UTC), mfa_enabled=False
        )
        self._rows[user.id] = row
        return row

    async def set_roles(self, user_id: UUID, roles: tuple[str, ...]) -> UserRecord | None:
        row = self._rows.get(user_id)
        if row is not None:
            row = self._rows[user_id] = dataclasses.replace(row, roles=tuple(roles))
        return row

    async def set_disabled(self, user_id: UUID, disabled: bool) -> UserRecord | None:
        row = self._rows.get(user_id)
        if row is not None:
            row = self._rows[user_id] = dataclasses.replace(row, disabled=disabled)
        return row

    async def mfa_state(self, user_id: UUID) -> MfaState | None:
        if user_id not in self._rows:
            return None
        return self._mfa.get(user_id, MfaState(False, None, None, None))

    async def set_pending_mfa(self, user_id: UUID, sealed: bytes) -> bool:
        state = await self.mfa_state(user_id)
        if state is None:
            return False
        self._mfa[user_id] = dataclasses.replace(state, pending_secret=sealed)
        return True

    async def activate_mfa(self, user_id: UUID, sealed: bytes, step: int) -> bool:
        state = await self.mfa_state(user_id)
        if state is None or state.enabled or state.pending_secret != sealed:
            return False
        self._mfa[user_id] = MfaState(True, sealed, None, step)
        self._rows[user_id] = dataclasses.replace(self._rows[user_id], mfa_enabled=True)
        return True

    async def use_totp_step(self, user_id: UUID, step: int) -> bool:
        state = await self.mfa_state(user_id)
        if state is None or not state.enabled:
            return False
        if state.last_step is not None and state.last_step >= step:
            return False
        self._mfa[user_id] = dataclasses.replace(state, last_step=step)
        return True

    async def disable_mfa(self, user_id: UUID) -> bool:
        if user_id not in self._rows:
            return False
        self._mfa[user_id] = MfaState(False, None, None, None)
        self._rows[user_id] = dataclasses.replace(self._rows[user_id], mfa_enabled=False)
        await self.replace_recovery_codes(user_id, ())
        return True

    async def replace_recovery_codes(self, user_id: UUID, hashes: Sequence[bytes]) -> None:
        for key in [k for k in self._codes if k[0] == user_id]:
            del self._codes[key]
        for code_hash in hashes:
            self._codes[(user_id, code_hash)] = None

    async def use_recovery_code(self, user_id: UUID, code_hash: bytes, at: datetime) -> bool:
        key = (user_id, code_hash)
        if key not in self._codes or self._codes[key] is not None:
            return False
        self._codes[key] = at
        return True


class FakeSessionRepository:
    def __init__(self, rows: dict[UUID, SessionRecord], users: dict[UUID, UserRecord]) -> None:
        self._rows = rows
        self._users = users

    async def add(self, session: SessionRecord) -> SessionRecord:
        if session.id in self._rows:
            raise ConflictError("UniqueViolation")
        if session.user_id not in self._users:
            raise ConflictError("ForeignKeyViolation")
        self._rows[session.id] = session
        return session

    async def get(self, session_id: UUID) -> SessionRecord | None:
        return self._rows.get(session_id)

    async def active_for_user(self, user_id: UUID) -> list[SessionRecord]:
        mine = [s for s in self._rows.values() if s.user_id == user_id and s.revoked_at is None]
        return sorted(mine, key=lambda s: (s.created_at, s.id), reverse=True)

    async def touch(self, session_id: UUID, at: datetime) -> None:
        if session_id in self._rows:
            self._rows[session_id] = dataclasses.replace(self._rows[session_id], last_used_at=at)

    async def revoke(self, session_id: UUID, at: datetime) -> bool:
        row = self._rows.get(session_id)
        if row is None or row.revoked_at is not None:
            return False
        self._rows[session_id] = dataclasses.replace(row, revoked_at=at)
        return True

    async def revoke_all_for_user(self, user_id: UUID, at: datetime) -> list[UUID]:
        ids = [s.id for s in self._rows.values() if s.user_id == user_id and s.revoked_at is None]
        for session_id in ids:
            await self.revoke(session_id, at)
        return ids


@dataclasses.dataclass(frozen=True, slots=True)
class FakeRefreshToken:
    session_id: UUID
    spent_at: datetime | None = None


class FakeRefreshTokenRepository:
    def __init__(
        self, rows: dict[bytes, FakeRefreshToken], sessions: dict[UUID, SessionRecord]
    ) -> None:
        self._rows = rows
        self._sessions = sessions

    async def add(self, token_hash: bytes, session_id: UUID) -> None:
        if token_hash in self._rows:
            raise ConflictError("UniqueViolation")
        if session_id not in self._sessions:
            raise ConflictError("ForeignKeyViolation")
        self._rows[token_hash] = FakeRefreshToken(session_id)

    async def spend(self, token_hash: bytes, at: datetime) -> UUID | None:
        row = self._rows.get(token_hash)
        if row is None or row.spent_at is not None:
            return None
        self._rows[token_hash] = dataclasses.replace(row, spent_at=at)
        return row.session_id

    async def session_of(self, token_hash: bytes) -> UUID | None:
        row = self._rows.get(token_hash)
        return None if row is None else row.session_id


class FakeSigningKeyRepository:
    def __init__(self, rows: dict[str, SigningKeyRecord]) -> None:
        self._rows = rows

    async def add(self, key: SigningKeyRecord) -> SigningKeyRecord:
        if key.kid in self._rows:
            raise ConflictError("UniqueViolation")
        self._rows[key.kid] = key
        return key

    async def published(self, now: datetime, grace: timedelta) -> list[SigningKeyRecord]:
        keys = [
            k for k in self._rows.values() if k.retired_at is None or k.retired_at > now - grace
        ]
        return sorted(keys, key=lambda k: (k.created_at, k.kid), reverse=True)

    async def retire(self, kid: str, at: datetime) -> None:
        row = self._rows.get(kid)
        if row is not None and row.retired_at is None:
            self._rows[kid] = dataclasses.replace(row, retired_at=at)


class FakeAuditLog:
    def __init__(self, rows: dict[UUID, AuditRecord]) -> None:
        self._rows = rows

    async def add(self, record: AuditRecord) -> None:
        if record.id in self._rows:
            raise ConflictError("UniqueViolation")
        self._rows[record.id] = record

    async def list_before(self, before: datetime | None, limit: int) -> list[AuditRecord]:
        rows = [r for r in self._rows.values() if before is None or r.at < before]
        return sorted(rows, key=lambda r: (r.at, r.id), reverse=True)[:limit]

    async def list_page(self, after: tuple[datetime, UUID] | None, limit: int) -> list[AuditRecord]:
        rows = [r for r in self._rows.values() if after is None or (r.at, r.id) < after]
        return sorted(rows, key=lambda r: (r.at, r.id), reverse=True)[:limit]


class FakeOrderRepository:
    def __init__(self, rows: dict[UUID, OrderRecord]) -> None:
        self._rows = rows

    async def add_many(self, orders: Sequence[OrderRecord]) -> set[UUID]:
        added = set()
        for order in orders:
            if order.id not in self._rows:
                self._rows[order.id] = order
                added.add(order.id)
        return added

    async def get(self, order_id: UUID) -> OrderRecord | None:
        return self._rows.get(order_id)

    async def get_many(self, order_ids: Sequence[UUID]) -> list[OrderRecord]:
        return [self._rows[i] for i in order_ids if i in self._rows]

    async def save_many(self, orders: Sequence[OrderRecord]) -> None:
        for order in orders:
            stored = self._rows.get(order.id)
            if stored is not None and STATUS_RANK[stored.status] <= STATUS_RANK[order.status]:
                self._rows[order.id] = dataclasses.replace(
                    stored,
                    status=order.status,
                    failure_reason=order.failure_reason,
                    updated_at=order.updated_at,
                )


class FakeSagaRepository:
    def __init__(
        self, rows: dict[UUID, SagaRecord], log: dict[int, SagaLogRecord], seq: Iterator[int]
    ) -> None:
        self._rows, self._log, self._seq = rows, log, seq

    async def add_many(self, sagas: Sequence[SagaRecord]) -> None:
        if any(s.id in self._rows for s in sagas):
            raise ConflictError("saga exists")
        self._rows.update({s.id: s for s in sagas})

    async def save_many(self, sagas: Sequence[SagaRecord]) -> None:
        for saga in sagas:
            if saga.id in self._rows:
                self._rows[saga.id] = saga

    async def append_log(self, entries: Sequence[SagaLogRecord]) -> None:
        for entry in entries:
            self._log[next(self._seq)] = entry

    async def get(self, saga_id: UUID) -> SagaRecord | None:
        return self._rows.get(saga_id)

    async def of_order(self, order_id: UUID) -> list[SagaRecord]:
        found = [s for s in self._rows.values() if s.order_id == order_id]
        return sorted(found, key=lambda s: s.created_at)

    async def unfinished(self, partitions: Sequence[int]) -> list[SagaRecord]:
        wanted = set(partitions)
        return [
            s
            for s in self._rows.values()
            if s.partition in wanted and s.status in ("RUNNING", "COMPENSATING", "STUCK")
        ]

    async def log_of(self, saga_id: UUID) -> list[SagaLogRecord]:
        return [e for _, e in sorted(self._log.items()) if e.saga_id == saga_id]

    async def list_page(
        self, status: str | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[SagaRecord]:
        rows = [
            s
            for s in self._rows.values()
            if (status is None or s.status == status)
            and (after is None or (s.updated_at, s.id) < after)
        ]
        return sorted(rows, key=lambda s: (s.updated_at, s.id), reverse=True)[:limit]

    async def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for saga in self._rows.values():
            counts[saga.status] = counts.get(saga.status, 0) + 1
        return counts


class FakeOutbox:
    def __init__(self, rows: dict[UUID, EventRecord]) -> None:
        self._rows = rows

    async def append(self, events: Sequence[EventRecord]) -> None:
        for event in events:
            if event.id not in self._rows:
                self._rows[event.id] = dataclasses.replace(event, seq=len(self._rows) + 1)


class FakeOrderViewRepository:
    def __init__(
        self, views: dict[UUID, OrderViewRecord], sales: dict[str, ProductSalesRecord]
    ) -> None:
        self._views = views
        self._sales = sales

    async def of_user(
        self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[OrderViewRecord]:
        mine = [v for v in self._views.values() if v.user_id == user_id]
        mine.sort(key=lambda v: (v.created_at, v.id), reverse=True)
        if after is not None:
            mine = [v for v in mine if (v.created_at, v.id) < after]
        return mine[:limit]

    async def sales(self, skus: Sequence[str] | None = None) -> list[ProductSalesRecord]:
        wanted = (
            self._sales if skus is None else {s: self._sales[s] for s in skus if s in self._sales}
        )
        return [wanted[s] for s in sorted(wanted)]


class FakeDeadLetterRepository:
    def __init__(self, rows: dict[UUID, DeadLetterRecord], outbox: dict[UUID, EventRecord]) -> None:
        self._rows = rows
        self._outbox = outbox

    async def list_page(
        self, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[DeadLetterRecord]:
        rows = sorted(self._rows.values(), key=lambda d: (d.dead_at, d.id), reverse=True)
        if after is not None:
            rows = [d for d in rows if (d.dead_at, d.id) < after]
        return rows[:limit]

    async def replay(self, dead_letter_id: UUID, at: datetime) -> DeadLetterRecord | None:
        letter = self._rows.get(dead_letter_id)
        if letter is None or letter.replayed_at is not None:
            return letter
        letter = self._rows[dead_letter_id] = dataclasses.replace(letter, replayed_at=at)
        self._outbox[letter.event.id] = letter.event
        return letter


_MISSING = object()


@dataclasses.dataclass
class FakeTables:
    """Every fake table; a unit of work stages a copy and publishes its changes on commit."""

    products: dict[str, ProductRecord] = dataclasses.field(default_factory=dict)
    users: dict[UUID, UserRecord] = dataclasses.field(default_factory=dict)
    mfa: dict[UUID, MfaState] = dataclasses.field(default_factory=dict)
    recovery_codes: dict[tuple[UUID, bytes], datetime | None] = dataclasses.field(
        default_factory=dict
    )
    sessions: dict[UUID, SessionRecord] = dataclasses.field(default_factory=dict)
    refresh_tokens: dict[bytes, FakeRefreshToken] = dataclasses.field(default_factory=dict)
    signing_keys: dict[str, SigningKeyRecord] = dataclasses.field(default_factory=dict)
    audit: dict[UUID, AuditRecord] = dataclasses.field(default_factory=dict)
    wallets: dict[UUID, WalletRecord] = dataclasses.field(default_factory=dict)
    ledger: dict[UUID, LedgerEntryRecord] = dataclasses.field(default_factory=dict)
    operations: dict[str, OperationRecord] = dataclasses.field(default_factory=dict)
    orders: dict[UUID, OrderRecord] = dataclasses.field(default_factory=dict)
    sagas: dict[UUID, SagaRecord] = dataclasses.field(default_factory=dict)
    saga_log: dict[int, SagaLogRecord] = dataclasses.field(default_factory=dict)
    outbox: dict[UUID, EventRecord] = dataclasses.field(default_factory=dict)
    order_views: dict[UUID, OrderViewRecord] = dataclasses.field(default_factory=dict)
    product_sales: dict[str, ProductSalesRecord] = dataclasses.field(default_factory=dict)
    dead_letters: dict[UUID, DeadLetterRecord] = dataclasses.field(default_factory=dict)
    # Like a database sequence: shared by every copy, and not rolled back.
    ledger_seq: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))
    log_seq: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def tables(self) -> dict[str, dict[Any, Any]]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.endswith("_seq")
        }

    def copy(self) -> FakeTables:
        # Records are immutable, so copying the dicts isolates the copy.
        tables = {name: dict(table) for name, table in self.tables().items()}
        return FakeTables(**tables, ledger_seq=self.ledger_seq, log_seq=self.log_seq)

    def publish(self, staged: FakeTables, base: FakeTables) -> None:
        """Apply the rows ``staged`` changed since ``base`` (row by row, as a database would).

        Rows changed meanwhile by another unit of work are kept unless this one changed them.
        Update in place: the factory and earlier units of work hold these very dicts.
        """
        for name, table in self.tables().items():
            new, old = getattr(staged, name), getattr(base, name)
            for key in old.keys() - new.keys():
                table.pop(key, None)
            for key, row in new.items():
                if old.get(key, _MISSING) is not row:
                    table[key] = row


class FakeUnitOfWork:
    """Stages writes in a copy and publishes them on commit, like a transaction.

    Reads see the committed state as of ``__aenter__`` (a snapshot, where PostgreSQL reads
    committed), and commit publishes the changed rows: two units of work that interleave
    their compare-and-set on one row can both succeed here. The services never interleave
    them (a fake call never yields), so their tests are not affected.
    """

    def __init__(self, committed: FakeTables) -> None:
        self._committed = committed
        self._base = self._staged = FakeTables()

    async def __aenter__(self) -> Self:
        self._base = self._committed.copy()
        staged = self._staged = self._committed.copy()
        self.products = FakeProductRepository(staged.products)
        self.wallets = FakeWalletRepository(staged.wallets, staged.users)
        self.ledger = FakeLedgerRepository(staged.ledger, staged.wallets, staged.ledger_seq)
        self.outbox = FakeOutbox(staged.outbox)
        self.operations = FakeOperationLog(staged.operations, self.outbox)
        self.users = FakeUserRepository(staged.users, staged.mfa, staged.recovery_codes)
        self.sessions = FakeSessionRepository(staged.sessions, staged.users)
        self.refresh_tokens = FakeRefreshTokenRepository(staged.refresh_tokens, staged.sessions)
        self.signing_keys = FakeSigningKeyRepository(staged.signing_keys)
        self.audit = FakeAuditLog(staged.audit)
        self.orders = FakeOrderRepository(staged.orders)
        self.sagas = FakeSagaRepository(staged.sagas, staged.saga_log, staged.log_seq)
        self.order_views = FakeOrderViewRepository(staged.order_views, staged.product_sales)
        self.dead_letters = FakeDeadLetterRepository(staged.dead_letters, staged.outbox)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._base = self._staged = FakeTables()

    async def commit(self) -> None:
        self._committed.publish(self._staged, self._base)
        self._base = self._staged.copy()


class FakeUnitOfWorkFactory:
    """Holds all committed state; ``rows`` are the products, the other tables sit beside it."""

    def __init__(self) -> None:
        self.tables = FakeTables()
        self.rows = self.tables.products
        self.users = self.tables.users
        self.sessions = self.tables.sessions
        self.refresh_tokens = self.tables.refresh_tokens
        self.signing_keys = self.tables.signing_keys
        self.audit = self.tables.audit
        self.wallets = self.tables.wallets
        self.ledger = self.tables.ledger
        self.operations = self.tables.operations
        self.orders = self.tables.orders
        self.sagas = self.tables.sagas
        self.saga_log = self.tables.saga_log
        self.outbox = self.tables.outbox
        self.order_views = self.tables.order_views
        self.product_sales = self.tables.product_sales
        self.dead_letters = self.tables.dead_letters

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.tables)


class CountingUnitOfWorkFactory:
    """Wraps a fake factory: counts transactions and commits, and can fail the next commits.

    Attributes:
        inner: the wrapped factory (its tables are the committed state).
        begun: units of work entered.
        commits: commits that went through.
        failing_commits: how many of the next commits raise ``failure`` instead.
        lost_commits: how many of the next commits go through, then raise ``failure``.
        on_enter: called with each unit of work once entered (to tamper with it).
    """

    def __init__(self, inner: FakeUnitOfWorkFactory | None = None) -> None:
        self.inner = inner or FakeUnitOfWorkFactory()
        self.begun = 0
        self.commits = 0
        self.failing_commits = 0
        self.lost_commits = 0
        self.failure: StorageError = StorageUnavailableError("connection lost at commit")
        self.on_enter: Callable[[FakeUnitOfWork], None] | None = None

    def __call__(self) -> _CountingUnitOfWork:
        return _CountingUnitOfWork(self, self.inner.tables)


class _CountingUnitOfWork(FakeUnitOfWork):
    def __init__(self, counter: CountingUnitOfWorkFactory, committed: FakeTables) -> None:
        super().__init__(committed)
        self._counter = counter

    async def __aenter__(self) -> Self:
        self._counter.begun += 1
        entered = await super().__aenter__()
        if self._counter.on_enter is not None:
            self._counter.on_enter(entered)
        return entered

    async def commit(self) -> None:
        if self._counter.failing_commits > 0:
            self._counter.failing_commits -= 1
            raise self._counter.failure
        await super().commit()
        self._counter.commits += 1
        if self._counter.lost_commits > 0:
            self._counter.lost_commits -= 1
            raise self._counter.failure


class FakeProductCache:
    def __init__(self) -> None:
        self.invalidated: list[str] = []

    async def invalidate(self, skus: Sequence[str]) -> None:
        self.invalidated.extend(skus)


class FakeSessionStateCache:
    """Records what the auth service published for the gateway."""

    def __init__(self) -> None:
        self.active: set[UUID] = set()
        self.revoked: set[UUID] = set()
        self.users: dict[UUID, UserState] = {}

    async def session_started(self, session_id: UUID) -> None:
        self.active.add(session_id)

    async def sessions_revoked(self, session_ids: Sequence[UUID]) -> None:
        self.revoked.update(session_ids)
        self.active.difference_update(session_ids)

    async def user_changed(self, user_id: UUID, user: UserState) -> None:
        self.users[user_id] = user


class FakePasswordHasher:
    """Plain, fast stand-in for argon2 in unit tests (the real one runs in e2e)."""

    async def hash(self, password: str) -> str:
        return "fake$" + password[::-1]

    async def verify(self, encoded: str | None, password: str) -> bool:
        return encoded is not None and encoded == "fake$" + password[::-1]


class FakeLoginThrottle:
    """Fixed-window counters on a settable clock; ``down`` makes every call fail like Redis."""

    def __init__(self) -> None:
        self.now_ms = 0
        self.windows: dict[str, tuple[int, int]] = {}  # key -> (count, window end in ms)
        self.down = False

    async def hit(self, keys: Sequence[str], window_s: int) -> list[ThrottleCount]:
        self._check()
        counts = []
        for key in keys:
            count, ends = self.windows.get(key, (0, self.now_ms + window_s * 1000))
            if ends <= self.now_ms:
                count, ends = 0, self.now_ms + window_s * 1000
            self.windows[key] = (count + 1, ends)
            counts.append(ThrottleCount(count + 1, ends - self.now_ms))
        return counts

    async def forgive(self, key: str) -> None:
        self._check()
        if key in self.windows:
            count, ends = self.windows[key]
            self.windows[key] = (max(0, count - 1), ends)

    async def clear(self, key: str) -> None:
        self._check()
        self.windows.pop(key, None)

    def count(self, key: str) -> int:
        count, ends = self.windows.get(key, (0, 0))
        return count if ends > self.now_ms else 0

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailableError("redis unavailable")
