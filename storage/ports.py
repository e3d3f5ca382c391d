"""Ports: what the services need from storage, as protocols the adapters and fakes satisfy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from storage.records import (
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


class ProductRepository(Protocol):
    """Products in the source of truth."""

    async def get(self, sku: str) -> ProductRecord | None:
        """Return the product, or ``None`` when no such SKU exists."""
        ...

    async def list_after(self, after: str | None, limit: int) -> Page[ProductRecord]:
        """Return up to ``limit`` products ordered by SKU, starting after ``after``."""
        ...

    async def in_partitions(self, partitions: Sequence[int]) -> list[ProductRecord]:
        """Return every product whose partition is one of ``partitions``."""
        ...

    async def get_many(self, skus: Sequence[str]) -> list[ProductRecord]:
        """Return the products of ``skus`` that exist, in no particular order."""
        ...

    async def add(self, product: ProductRecord) -> ProductRecord:
        """Insert a new product.

        Raises:
            ConflictError: the SKU exists already.
        """
        ...

    async def update_many(self, rows: Sequence[ProductRecord]) -> list[ProductRecord]:
        """Store each row's fields if the stored version is one less than the row's.

        Returns the stored rows.

        Raises:
            StaleWriteError: some stored row has another version (another writer got there).
        """
        ...


class WalletRepository(Protocol):
    """Wallets: one per user, created empty with the user."""

    async def add(self, user_id: UUID) -> WalletRecord:
        """Create the user's empty wallet.

        Raises:
            ConflictError: the wallet exists already, or the user does not.
        """
        ...

    async def get(self, user_id: UUID) -> WalletRecord | None:
        """Return the user's wallet, or ``None`` when there is no such user."""
        ...

    async def get_many(self, user_ids: Sequence[UUID]) -> list[WalletRecord]:
        """Return the wallets of ``user_ids`` that exist, in no particular order."""
        ...

    async def update_many(self, rows: Sequence[WalletRecord]) -> list[WalletRecord]:
        """Store each row's balance if the stored version is one less than the row's.

        Raises:
            StaleWriteError: some stored row has another version.
        """
        ...


class LedgerRepository(Protocol):
    """The append-only double-entry ledger."""

    async def append(self, entries: Sequence[LedgerEntryRecord]) -> None:
        """Add entries; every movement's entries must be in the same call."""
        ...

    async def of_wallet(
        self, wallet_id: UUID, before: int | None, limit: int
    ) -> tuple[list[LedgerEntryRecord], int | None]:
        """A wallet's entries, newest first, older than position ``before``.

        Returns:
            Up to ``limit`` entries, and the position to continue before (``None``: no more).
        """
        ...


class OperationLog(Protocol):
    """Outcomes of applied commands by idempotency key, written with their effects."""

    async def record(
        self, operations: Sequence[OperationRecord], events: Sequence[EventRecord] = ()
    ) -> set[str]:
        """Record the operations whose keys are new; return the keys this call recorded.

        ``events``, those the operations' effects publish, are appended to the outbox with
        them (known ids skipped); the transaction decides whether both stay.
        """
        ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, OperationRecord]:
        """The recorded operations among ``keys``, by key."""
        ...


class UserRepository(Protocol):
    """User accounts; emails are unique and compared exactly as stored."""

    async def get(self, user_id: UUID) -> UserRecord | None:
        """Return the user, or ``None`` when no such id exists."""
        ...

    async def by_email(self, email: str) -> UserRecord | None:
        """Return the user with exactly this email (callers lower-case it), or ``None``."""
        ...

    async def add(self, user: UserRecord) -> UserRecord:
        """Insert a new user; the database sets ``created_at``, which is returned.

        Raises:
            ConflictError: the email or the id exists already.
        """
        ...

    async def set_roles(self, user_id: UUID, roles: tuple[str, ...]) -> UserRecord | None:
        """Replace the user's roles; return the changed user, or ``None`` if unknown."""
        ...

    async def set_disabled(self, user_id: UUID, disabled: bool) -> UserRecord | None:
        """Disable or enable the user; return the changed user, or ``None`` if unknown."""
        ...

    async def mfa_state(self, user_id: UUID) -> MfaState | None:
        """Return the user's second factor, or ``None`` when no such id exists."""
        ...

    async def set_pending_mfa(self, user_id: UUID, sealed: bytes) -> bool:
        """Keep ``sealed`` as the secret awaiting activation; ``False`` if the user is unknown."""
        ...

    async def activate_mfa(self, user_id: UUID, sealed: bytes, step: int) -> bool:
        """Turn MFA on with the pending secret ``sealed``, ``step`` counting as used.

        Only when MFA is off and ``sealed`` is still the pending secret; ``True`` when this
        call turned it on.
        """
        ...

    async def use_totp_step(self, user_id: UUID, step: int) -> bool:
        """Accept TOTP time ``step`` once; ``True`` only if MFA is on and ``step`` is later.

        Later, that is, than every step accepted before (a single conditional update).
        """
        ...

    async def disable_mfa(self, user_id: UUID) -> bool:
        """Turn MFA off, forgetting secrets and recovery codes; ``False`` if unknown."""
        ...

    async def replace_recovery_codes(self, user_id: UUID, hashes: Sequence[bytes]) -> None:
        """Replace every recovery code of the user by unused ``hashes``."""
        ...

    async def use_recovery_code(self, user_id: UUID, code_hash: bytes, at: datetime) -> bool:
        """Mark an unused recovery code of the user used; ``True`` when this call did."""
        ...


class SessionRepository(Protocol):
    """Login sessions; revoking one is final."""

    async def add(self, session: SessionRecord) -> SessionRecord:
        """Insert a new session with the record's timestamps.

        Raises:
            ConflictError: the id exists already, or the user does not.
        """
        ...

    async def get(self, session_id: UUID) -> SessionRecord | None:
        """Return the session, revoked or not, or ``None`` when no such id exists."""
        ...

    async def active_for_user(self, user_id: UUID) -> list[SessionRecord]:
        """Return the user's sessions that are not revoked, newest first."""
        ...

    async def touch(self, session_id: UUID, at: datetime) -> None:
        """Set the session's ``last_used_at`` to ``at``; an unknown id is ignored."""
        ...

    async def revoke(self, session_id: UUID, at: datetime) -> bool:
        """Revoke the session at ``at`` unless it is revoked already.

        Returns:
            ``True`` when this call revoked it; ``False`` when it was revoked before or is unknown.
        """
        ...

    async def revoke_all_for_user(self, user_id: UUID, at: datetime) -> list[UUID]:
        """Revoke every active session of the user at ``at``.

        Returns:
            The ids of the sessions this call revoked.
        """
        ...


class RefreshTokenRepository(Protocol):
    """Refresh tokens, kept only as their SHA-256 hashes; each can be spent once."""

    async def add(self, token_hash: bytes, session_id: UUID) -> None:
        """Record a new, unspent token of ``session_id``.

        Raises:
            ConflictError: the hash exists already, or the session does not.
        """
        ...

    async def spend(self, token_hash: bytes, at: datetime) -> UUID | None:
        """Atomically mark an unspent token spent at ``at``.

        Returns:
            The token's session id, or ``None`` when the token is unknown or already spent
            (of two concurrent calls, exactly one gets the session id).
        """
        ...

    async def session_of(self, token_hash: bytes) -> UUID | None:
        """Return the session of a token, spent or not, so that reuse can be detected."""
        ...


class SigningKeyRepository(Protocol):
    """The keys that sign access tokens, and those whose tokens may still be verified."""

    async def add(self, key: SigningKeyRecord) -> SigningKeyRecord:
        """Insert a new key with the record's timestamps.

        Raises:
            ConflictError: the kid exists already.
        """
        ...

    async def published(self, now: datetime, grace: timedelta) -> list[SigningKeyRecord]:
        """Return the keys not retired, or retired less than ``grace`` before ``now``.

        Returns:
            The published keys, newest first.
        """
        ...

    async def retire(self, kid: str, at: datetime) -> None:
        """Retire the key at ``at`` unless it is retired already; an unknown kid is ignored."""
        ...


class AuditLog(Protocol):
    """Security events, append only."""

    async def add(self, record: AuditRecord) -> None:
        """Append an event.

        Raises:
            ConflictError: the id exists already.
        """
        ...

    async def list_before(self, before: datetime | None, limit: int) -> list[AuditRecord]:
        """Return up to ``limit`` events, newest first, strictly before ``before`` when given."""
        ...

    async def list_page(self, after: tuple[datetime, UUID] | None, limit: int) -> list[AuditRecord]:
        """Return up to ``limit`` events, newest first, continuing after ``after``.

        Events are ordered by ``(at, id)`` descending and ``after`` is the last page's final
        ``(at, id)``, so events of the same instant are neither skipped nor repeated.
        """
        ...


class OrderRepository(Protocol):
    """Orders in the source of truth; each is written by the orchestrator owning its id."""

    async def add_many(self, orders: Sequence[OrderRecord]) -> set[UUID]:
        """Insert the orders whose id is new; return the ids inserted."""
        ...

    async def get(self, order_id: UUID) -> OrderRecord | None:
        """Return the order, or ``None``."""
        ...

    async def get_many(self, order_ids: Sequence[UUID]) -> list[OrderRecord]:
        """Return the orders of ``order_ids`` that exist, in no particular order."""
        ...

    async def save_many(self, orders: Sequence[OrderRecord]) -> None:
        """Store the status, failure reason and ``updated_at`` of existing orders."""
        ...


class SagaRepository(Protocol):
    """Saga instances and their append-only step log."""

    async def add_many(self, sagas: Sequence[SagaRecord]) -> None:
        """Insert new sagas.

        Raises:
            ConflictError: a saga with one of these ids exists.
        """
        ...

    async def save_many(self, sagas: Sequence[SagaRecord]) -> None:
        """Store the state (status, steps, data, failure, error, ``updated_at``) of sagas."""
        ...

    async def append_log(self, entries: Sequence[SagaLogRecord]) -> None:
        """Append step transitions to the saga log."""
        ...

    async def get(self, saga_id: UUID) -> SagaRecord | None:
        """Return the saga, or ``None``."""
        ...

    async def of_order(self, order_id: UUID) -> list[SagaRecord]:
        """Return the sagas that worked on ``order_id``, oldest first."""
        ...

    async def unfinished(self, partitions: Sequence[int]) -> list[SagaRecord]:
        """Return the RUNNING, COMPENSATING and STUCK sagas of ``partitions``."""
        ...

    async def log_of(self, saga_id: UUID) -> list[SagaLogRecord]:
        """Return the saga's step transitions, oldest first."""
        ...

    async def list_page(
        self, status: str | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[SagaRecord]:
        """Return up to ``limit`` sagas (of ``status``, if given), newest change first.

        Ordered by ``(updated_at, id)`` descending, continuing after ``after``.
        """
        ...

    async def count_by_status(self) -> dict[str, int]:
        """How many sagas are in each status."""
        ...


class Outbox(Protocol):
    """Events waiting to be published, written in the transaction of their change."""

    async def append(self, events: Sequence[EventRecord]) -> None:
        """Add events to the outbox; events whose id is there already are skipped."""
        ...


class OrderViewRepository(Protocol):
    """The read models the projector builds from events: order history and sales per SKU."""

    async def of_user(
        self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[OrderViewRecord]:
        """Return up to ``limit`` of the user's orders, newest first, continuing after ``after``.

        Ordered by ``(created_at, id)`` descending; ``after`` is the last page's final
        ``(created_at, id)``, so orders of the same instant are neither skipped nor repeated.
        """
        ...

    async def sales(self, skus: Sequence[str] | None = None) -> list[ProductSalesRecord]:
        """Return units sold and revenue per SKU (of ``skus``, or every SKU), ordered by SKU."""
        ...


class DeadLetterRepository(Protocol):
    """Events consumer groups gave up on; operators list and replay them."""

    async def list_page(
        self, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[DeadLetterRecord]:
        """Return up to ``limit`` dead letters, newest first, continuing after ``after``.

        Ordered by ``(dead_at, id)`` descending.
        """
        ...

    async def replay(self, dead_letter_id: UUID, at: datetime) -> DeadLetterRecord | None:
        """Hand the event to its group again: it is published anew and handled once more.

        Replaying a dead letter that was replayed already changes nothing.

        Returns:
            The dead letter as it is now, or ``None`` when no such id exists.
        """
        ...


class UnitOfWork(Protocol):
    """One transaction: changes made through its repositories commit together or not at all."""

    @property
    def products(self) -> ProductRepository:
        """The products of this transaction."""
        ...

    @property
    def users(self) -> UserRepository:
        """The users of this transaction."""
        ...

    @property
    def wallets(self) -> WalletRepository:
        """The wallets of this transaction."""
        ...

    @property
    def ledger(self) -> LedgerRepository:
        """The ledger of this transaction."""
        ...

    @property
    def operations(self) -> OperationLog:
        """The applied-operations log of this transaction."""
        ...

    @property
    def orders(self) -> OrderRepository:
        """The orders of this transaction."""
        ...

    @property
    def sagas(self) -> SagaRepository:
        """The saga instances and saga log of this transaction."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The event outbox of this transaction."""
        ...

    @property
    def order_views(self) -> OrderViewRepository:
        """The order and sales read models, as of this transaction."""
        ...

    @property
    def dead_letters(self) -> DeadLetterRepository:
        """The dead-lettered events of this transaction."""
        ...

    @property
    def sessions(self) -> SessionRepository:
        """The login sessions of this transaction."""
        ...

    @property
    def refresh_tokens(self) -> RefreshTokenRepository:
        """The refresh tokens of this transaction."""
        ...

    @property
    def signing_keys(self) -> SigningKeyRepository:
        """The token signing keys of this transaction."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The security audit log of this transaction."""
        ...

    async def __aenter__(self) -> Self:
        """Begin the transaction."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed, and release the connection."""
        ...

    async def commit(self) -> None:
        """Make the transaction's changes durable."""
        ...


class UnitOfWorkFactory(Protocol):
    """Makes a fresh unit of work for each use case call."""

    def __call__(self) -> UnitOfWork:
        """Return a new, not yet entered unit of work."""
        ...


class ProductCache(Protocol):
    """The cache-aside copy of product reads (Redis), rebuilt from the source of truth."""

    async def invalidate(self, skus: Sequence[str]) -> None:
        """Drop the cached entries of ``skus`` and every cached listing."""
        ...


class SessionStateCache(Protocol):
    """Session liveness and user roles as the gateway reads them (Redis), rebuilt from PostgreSQL.

    Writes happen after the change committed; each may raise a retryable storage error.
    """

    async def session_started(self, session_id: UUID) -> None:
        """Mark a new session active."""
        ...

    async def sessions_revoked(self, session_ids: Sequence[UUID]) -> None:
        """Mark sessions revoked."""
        ...

    async def user_changed(self, user_id: UUID, user: UserState) -> None:
        """Publish a user's current roles and whether the account is disabled."""
        ...


@dataclass(frozen=True, slots=True)
class ThrottleCount:
    """Attempts counted against one key in its current window.

    Attributes:
        count: attempts in the window, including the one just counted.
        remaining_ms: milliseconds until the window ends.
    """

    count: int
    remaining_ms: int


class LoginThrottle(Protocol):
    """Counts login attempts per key (an email, a client address) in fixed windows (Redis).

    Each call may raise a retryable storage error; callers refuse the login then (fail closed).
    """

    async def hit(self, keys: Sequence[str], window_s: int) -> list[ThrottleCount]:
        """Count one more attempt against each key, atomically.

        A key's window starts with its first attempt and lasts ``window_s``; later attempts
        do not extend it.

        Returns:
            Each key's count in its window (including this attempt), in the order given.
        """
        ...

    async def forgive(self, key: str) -> None:
        """Take back one attempt of ``key`` (a login that turned out to succeed)."""
        ...

    async def clear(self, key: str) -> None:
        """Forget every attempt of ``key``."""
        ...
