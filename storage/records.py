"""Plain records exchanged between the domain and the storage adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProductRecord:
    """One product row: its catalogue data and its stock.

    Attributes:
        sku: the product's stock-keeping unit, its primary key.
        name: display name.
        price: unit price in minor units of ``currency``.
        currency: ISO 4217 code; one per deployment.
        available: units that can be reserved.
        reserved: units held by unfinished orders.
        partition: the ownership partition the SKU hashes to.
        version: incremented by every change of the row.
        updated_at: time of the last change.
    """

    sku: str
    name: str
    price: int
    currency: str
    available: int
    reserved: int
    partition: int
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing.

    Attributes:
        items: the records on this page.
        next_after: the key to continue after, or ``None`` on the last page.
    """

    items: tuple[T, ...]
    next_after: str | None


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user account.

    Attributes:
        id: the user's id, chosen by the caller.
        email: the login email, stored exactly as given (callers normalise it to lower case).
        password_hash: the password hash in the hasher's own encoded form.
        display_name: an optional name to show.
        roles: the user's role names.
        disabled: a disabled user cannot log in.
        created_at: set by the database when the user is added.
        mfa_enabled: whether login needs a second factor (a TOTP or recovery code).
    """

    id: UUID
    email: str
    password_hash: str
    display_name: str | None
    roles: tuple[str, ...]
    disabled: bool
    created_at: datetime
    mfa_enabled: bool = False


@dataclass(frozen=True, slots=True)
class MfaState:
    """A user's second factor.

    Attributes:
        enabled: whether login needs the second factor.
        secret: the active TOTP secret, sealed, or ``None``.
        pending_secret: an enrolled secret awaiting activation, sealed, or ``None``.
        last_step: the last accepted TOTP time step; only later steps are accepted.
    """

    enabled: bool
    secret: bytes | None
    pending_secret: bytes | None
    last_step: int | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One login session; its refresh tokens and access tokens belong to it.

    Attributes:
        id: the session id (the ``sid`` claim of its access tokens).
        user_id: the user who logged in.
        created_at: when the session began.
        last_used_at: when a token of the session was last refreshed.
        user_agent: the client's ``User-Agent`` at login, truncated to 256 characters.
        revoked_at: when the session was revoked, or ``None`` while it is active.
    """

    id: UUID
    user_id: UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """One key that signs access tokens.

    Attributes:
        kid: the key id put in the JWT header.
        private_key: the private key, serialised by the token service.
        public_jwk: the public key as a JSON Web Key (a JSON string).
        created_at: when the key was made; the newest unretired key signs.
        retired_at: when the key stopped signing, or ``None`` while it signs.
    """

    kid: str
    private_key: bytes
    public_jwk: str
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One security event (login, failure, MFA or role change, revocation).

    Attributes:
        id: the event id.
        at: when it happened.
        kind: what happened, e.g. ``login_failed``.
        user_id: the user the event is about, if any.
        actor_id: the user who caused it, if not the subject (an admin), else ``None``.
        trace_id: the trace of the request that caused it.
        detail: more about the event, as a JSON string.
    """

    id: UUID
    at: datetime
    kind: str
    user_id: UUID | None
    actor_id: UUID | None
    trace_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class UserState:
    """What every request needs to know about its user, as of now.

    Attributes:
        roles: the user's roles (a change applies to the next request).
        disabled: whether the account is disabled.
    """

    roles: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True, slots=True)
class WalletRecord:
    """One customer's wallet; its balance is the sum of its ledger entries.

    Attributes:
        user_id: the owner, one wallet per user.
        balance: minor units of the deployment's currency, never negative.
        version: incremented by every committed change of the row.
        updated_at: time of the last change.
    """

    user_id: UUID
    balance: int
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntryRecord:
    """One side of a movement of money; a movement's entries sum to zero.

    Attributes:
        id: the entry's id.
        movement_id: the movement both entries belong to.
        account: ``wallet`` for a wallet's side, else the system account (``system:funding``).
        wallet_id: the wallet for a wallet's side, else ``None``.
        amount: signed minor units from the account's side (credit positive).
        balance_after: the wallet's balance after this entry; ``None`` on system accounts.
        kind: ``credit``, ``debit`` or ``refund``.
        reference: why: a credit's reason, or the order or saga step that moved the money.
        created_at: when the entry was committed (set by the database).
        seq: the entry's position in the ledger (set by the database).
    """

    id: UUID
    movement_id: UUID
    account: str
    wallet_id: UUID | None
    amount: int
    balance_after: int | None
    kind: str
    reference: str
    created_at: datetime | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """The stored outcome of one applied (or refused) command, by its idempotency key.

    Attributes:
        key: the idempotency key (``http:<user>:<Idempotency-Key>``, ``saga:<id>:<step>``...).
        fingerprint: a digest of what was asked; the same key asking otherwise is a conflict.
        outcome: the outcome as JSON text, replayed for a repeated call.
    """

    key: str
    fingerprint: str
    outcome: str


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order, its price fixed when the order was accepted."""

    sku: str
    quantity: int
    price: int


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order.

    Attributes:
        id: the order's id (derived from the idempotency key it was placed with).
        user_id: the customer who placed it.
        status: PENDING, CONFIRMED, FAILED, CANCELLING or CANCELLED.
        items: its lines.
        total: what the wallet is debited, in minor units of ``currency``.
        currency: the deployment's currency.
        failure_reason: why it FAILED (``out_of_stock``, ``insufficient_funds``...).
        trace_id: the trace of the request that placed it.
        created_at: when it was accepted.
        updated_at: its last change.
    """

    id: UUID
    user_id: UUID
    status: str
    items: tuple[OrderLine, ...]
    total: int
    currency: str
    failure_reason: str | None
    trace_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SagaRecord:
    """A saga's current state, as the saga engine stores it.

    Attributes:
        id: the saga's id.
        kind: which saga (``place_order``, ``cancel_order``).
        order_id: the order it works on (its partition decides the orchestrator).
        partition: the ownership partition of ``order_id``.
        status: RUNNING, COMPENSATING, COMPLETED, FAILED or STUCK.
        steps: the engine's step states, as JSON text.
        data: the saga's input and what its steps learned, as JSON text.
        failure_reason: why it failed, once it has.
        error: the last error, for operators.
        trace_id: the trace of the request that started it.
        deadline: when the whole saga times out.
        created_at: when it started.
        updated_at: its last transition.
    """

    id: UUID
    kind: str
    order_id: UUID
    partition: int
    status: str
    steps: str
    data: str
    failure_reason: str | None
    error: str | None
    trace_id: str
    deadline: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SagaLogRecord:
    """One step transition of a saga (``started``, ``succeeded``, ``failed``, ...)."""

    saga_id: UUID
    step: str
    transition: str
    attempt: int
    detail: str | None
    trace_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A domain event, as written to the outbox and published to the event streams.

    Attributes:
        id: the event's id (consumers deduplicate on it).
        type: ``OrderPlaced``, ``StockReserved``, ``WalletDebited``, ...
        aggregate_id: what it is about (an order id, a SKU, a wallet's user id); one
            aggregate's events are published in order.
        trace_id: the trace of the request that caused it.
        payload: its JSON text.
        created_at: when the change it describes committed.
        seq: its position in the outbox (``0`` until stored).
    """

    id: UUID
    type: str
    aggregate_id: str
    trace_id: str
    payload: str
    created_at: datetime
    seq: int = 0


# Order statuses in the order they can follow each other ("newer status wins").
STATUS_RANK = {"PENDING": 0, "CONFIRMED": 1, "FAILED": 1, "CANCELLING": 2, "CANCELLED": 3}


@dataclass(frozen=True, slots=True)
class OrderViewRecord:
    """One order as the read model lists it (built from events; may trail the truth).

    Attributes:
        id: the order's id.
        user_id: the customer who placed it.
        status: the newest status the projector has seen.
        total: what the order costs, in minor units of ``currency``.
        currency: the deployment's currency.
        created_at: when the order was accepted.
        updated_at: its last change the projector has seen.
    """

    id: UUID
    user_id: UUID
    status: str
    total: int
    currency: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ProductSalesRecord:
    """Units sold and revenue of one SKU: confirmed orders minus cancelled ones.

    Attributes:
        sku: the product.
        units: units sold.
        revenue: what they brought in, in minor units of the deployment's currency.
    """

    sku: str
    units: int
    revenue: int


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """An event a consumer group gave up on after too many failed deliveries.

    Attributes:
        id: the dead letter's id (operators replay it by this id).
        consumer: the consumer group that failed (``projector``, ``notifier``...).
        event: the event itself.
        error: the last failure, for operators.
        deliveries: how often it was delivered to the group.
        dead_at: when the group gave up.
        replayed_at: when an operator replayed it, or ``None``.
    """

    id: UUID
    consumer: str
    event: EventRecord
    error: str
    deliveries: int
    dead_at: datetime
    replayed_at: datetime | None
