"""In-memory fakes of the storage ports; they pass the same contract tests as the adapters."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self
from uuid import UUID

from storage.errors import ConflictError, StorageUnavailableError
from storage.ports import ThrottleCount
from storage.records import (
    AuditRecord,
    MfaState,
    Page,
    ProductRecord,
    SessionRecord,
    SigningKeyRecord,
    UserRecord,
    UserState,
)


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

    async def add(self, product: ProductRecord) -> ProductRecord:
        if product.sku in self._rows:
            raise ConflictError("UniqueViolation")
        row = dataclasses.replace(product, updated_at=datetime.now(UTC))
        self._rows[product.sku] = row
        return row


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


@dataclasses.dataclass
class FakeTables:
    """Every fake table; a unit of work stages a copy and publishes it on commit."""

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

    def copy(self) -> FakeTables:
        # Records are immutable, so copying the dicts isolates the copy.
        return FakeTables(**{f.name: dict(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def publish(self, staged: FakeTables) -> None:
        # Update in place: the factory and earlier units of work hold these very dicts.
        for f in dataclasses.fields(self):
            table = getattr(self, f.name)
            table.clear()
            table.update(getattr(staged, f.name))


class FakeUnitOfWork:
    """Stages writes in a copy and publishes them on commit, like a transaction."""

    def __init__(self, committed: FakeTables) -> None:
        self._committed = committed
        self._staged = FakeTables()

    async def __aenter__(self) -> Self:
        staged = self._staged = self._committed.copy()
        self.products = FakeProductRepository(staged.products)
        self.users = FakeUserRepository(staged.users, staged.mfa, staged.recovery_codes)
        self.sessions = FakeSessionRepository(staged.sessions, staged.users)
        self.refresh_tokens = FakeRefreshTokenRepository(staged.refresh_tokens, staged.sessions)
        self.signing_keys = FakeSigningKeyRepository(staged.signing_keys)
        self.audit = FakeAuditLog(staged.audit)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._staged = FakeTables()

    async def commit(self) -> None:
        self._committed.publish(self._staged)


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

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.tables)


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
