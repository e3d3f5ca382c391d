"""Request and response models of the HTTP API (pydantic lives only at the edges)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Self, TypeVar
from uuid import UUID

from fastapi import Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors._ops import MAX_AMOUNT, MAX_QUANTITY
from actors.inventory.model import MAX_NAME, SKU_PATTERN
from actors.payments.model import MAX_REFERENCE
from sagas.orchestrator import MAX_LINES
from serve.errors import InvalidCursorError
from storage.records import (
    AuditRecord,
    DeadLetterRecord,
    LedgerEntryRecord,
    OrderRecord,
    OrderViewRecord,
    ProductRecord,
    SagaLogRecord,
    SagaRecord,
)

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]
SkuPath = Annotated[str, Path(pattern=f"^{SKU_PATTERN.pattern}$", description="the product's SKU")]
IfNoneMatch = Annotated[str | None, Header()]


class ProductOut(BaseModel):
    """A product as clients see it."""

    model_config = ConfigDict(extra="forbid")

    sku: str
    name: str
    price: int
    currency: str
    available: int
    updated_at: datetime

    @classmethod
    def of(cls, record: ProductRecord) -> ProductOut:
        """The public view of a product row."""
        return cls(
            sku=record.sku,
            name=record.name,
            price=record.price,
            currency=record.currency,
            available=record.available,
            updated_at=record.updated_at,
        )


class ProductPage(BaseModel):
    """One page of products."""

    items: list[ProductOut]
    next_cursor: str | None


class ReadinessOut(BaseModel):
    """Each dependency's state: ``ok`` or ``fail``."""

    status: str
    checks: dict[str, str]


def encode_cursor(after: str) -> str:
    """An opaque cursor for continuing after ``after``."""
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The key a cursor continues after.

    Raises:
        InvalidCursorError: the cursor was not issued by :func:`encode_cursor`.
    """
    if cursor is None:
        return None
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError() from None
    if not SKU_PATTERN.fullmatch(after):
        raise InvalidCursorError()
    return after


class _Strict(BaseModel):
    """Request bodies: unknown fields are refused and nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(_Strict):
    """``POST /auth/register``."""

    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)


class LoginIn(_Strict):
    """``POST /auth/login``."""

    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(_Strict):
    """``POST /auth/refresh``."""

    refresh_token: str = Field(min_length=1, max_length=200)


_CODE = Field(default=None, min_length=1, max_length=16, description="a 6-digit TOTP code")
_RECOVERY = Field(default=None, min_length=1, max_length=32, description="a recovery code")


def _exactly_one(code: str | None, recovery_code: str | None) -> None:
    if (code is None) == (recovery_code is None):
        raise ValueError("give exactly one of code and recovery_code")


class _SecondFactor(_Strict):
    """Exactly one of a current TOTP code and a recovery code."""

    code: str | None = _CODE
    recovery_code: str | None = _RECOVERY

    @model_validator(mode="after")
    def _one_factor(self) -> Self:
        _exactly_one(self.code, self.recovery_code)
        return self


class MfaVerifyIn(_SecondFactor):
    """``POST /auth/mfa/verify``: the login's ``mfa_token`` and one second factor."""

    mfa_token: str = Field(min_length=1, max_length=2000)


class MfaCodeIn(_Strict):
    """``POST /auth/mfa/activate``: a code of the enrolled secret."""

    code: str = Field(min_length=1, max_length=16)


class MfaDisableIn(_SecondFactor):
    """``DELETE /auth/mfa``: a current TOTP code or a recovery code."""


class MfaRequiredOut(BaseModel):
    """A login whose account has MFA on: finish it at ``POST /auth/mfa/verify``."""

    mfa_required: bool = True
    mfa_token: str
    expires_in: int


class MfaEnrollOut(BaseModel):
    """``POST /auth/mfa/enroll``: the new secret, for an authenticator app."""

    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    """``POST /auth/mfa/activate``: single-use recovery codes, shown only this once."""

    recovery_codes: list[str]


class UserOut(BaseModel):
    """A newly registered user."""

    id: UUID
    email: str
    roles: list[str]


class MeOut(UserOut):
    """``GET /auth/me``."""

    permissions: list[str]
    mfa_enabled: bool


class TokensOut(BaseModel):
    """A fresh access and refresh token pair."""

    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int
    session_id: UUID


class SessionOut(BaseModel):
    """One of the caller's sessions."""

    id: UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str
    current: bool


class SessionsOut(BaseModel):
    """``GET /auth/sessions``."""

    items: list[SessionOut]


class RolesIn(_Strict):
    """``POST /admin/users/{id}/roles``: the user's roles from now on."""

    roles: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(max_length=32)


class UserRolesOut(BaseModel):
    """A user's roles after a change."""

    id: UUID
    roles: list[str]


class AuditEventOut(BaseModel):
    """One security event."""

    id: UUID
    at: datetime
    kind: str
    user_id: UUID | None
    actor_id: UUID | None
    trace_id: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEventOut:
        """The API view of an audit row (its detail is stored as a JSON object)."""
        detail = json.loads(record.detail) if record.detail else {}
        return cls(
            id=record.id,
            at=record.at,
            kind=record.kind,
            user_id=record.user_id,
            actor_id=record.actor_id,
            trace_id=record.trace_id,
            detail=detail if isinstance(detail, dict) else {"value": detail},
        )


class AuditPage(BaseModel):
    """``GET /admin/audit``: newest first."""

    items: list[AuditEventOut]
    next_cursor: str | None


T = TypeVar("T")


def parse_id(raw: str, missing: Callable[[str], Exception]) -> UUID:
    """``raw`` as a UUID; a path id that is not one names nothing (``missing(raw)``).

    Raises:
        Exception: ``missing(raw)``, when ``raw`` is not a UUID.
    """
    try:
        return UUID(raw)
    except ValueError:
        raise missing(raw) from None


def keyset_page(
    found: Sequence[T], limit: int, position: Callable[[T], tuple[datetime, UUID]]
) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``found`` (read as ``limit + 1``) and the cursor after them."""
    page = list(found[:limit])
    if len(found) <= limit:
        return page, None
    return page, encode_audit_cursor(*position(page[-1]))


def encode_audit_cursor(at: datetime, event_id: UUID) -> str:
    """An opaque cursor continuing after the event ``(at, event_id)``."""
    return encode_cursor(f"{at.isoformat()}|{event_id}")


def decode_audit_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The ``(at, id)`` an audit cursor continues after.

    Raises:
        InvalidCursorError: the cursor was not issued by :func:`encode_audit_cursor`.
    """
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, event_id = raw.partition("|")
        key = (datetime.fromisoformat(at), UUID(event_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError() from None
    if key[0].tzinfo is None:
        raise InvalidCursorError()
    return key


_AMOUNT = Field(ge=1, le=MAX_AMOUNT, description="minor units of the deployment's currency")
_QUANTITY = Field(ge=1, le=MAX_QUANTITY, description="units")
_NAME = Field(min_length=1, max_length=MAX_NAME)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x20-\x7e]{1,255}$",
        description="1..255 printable characters; the same key and body answer the same",
    ),
]


class ProductIn(_Strict):
    """``POST /products``."""

    sku: str = Field(pattern=f"^{SKU_PATTERN.pattern}$")
    name: str = _NAME
    price: int = _AMOUNT
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    initial_stock: int = Field(ge=0, le=MAX_QUANTITY)


class ProductPatchIn(_Strict):
    """``PATCH /products/{sku}``: the fields to change (stock is not one of them)."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    price: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.name is None and self.price is None:
            raise ValueError("give name or price")
        return self


class RestockIn(_Strict):
    """``POST /products/{sku}/restock``."""

    quantity: int = _QUANTITY


class StockOut(BaseModel):
    """Units available after a stock change."""

    available: int


class CreditIn(_Strict):
    """``POST /wallets/{user_id}/credit``."""

    amount: int = _AMOUNT
    reason: str = Field(min_length=1, max_length=MAX_REFERENCE)


class BalanceOut(BaseModel):
    """A wallet's balance after a movement."""

    balance: int


class WalletOut(BaseModel):
    """A wallet."""

    user_id: UUID
    balance: int
    currency: str
    updated_at: datetime


class LedgerEntryOut(BaseModel):
    """One movement of a wallet, signed from the wallet's side."""

    id: UUID
    amount: int
    balance_after: int
    kind: str
    reference: str
    created_at: datetime

    @classmethod
    def of(cls, record: LedgerEntryRecord) -> LedgerEntryOut:
        """The API view of a wallet's ledger entry."""
        assert record.balance_after is not None
        assert record.created_at is not None
        return cls(
            id=record.id,
            amount=record.amount,
            balance_after=record.balance_after,
            kind=record.kind,
            reference=record.reference,
            created_at=record.created_at,
        )


class LedgerPage(BaseModel):
    """``GET /wallets/me/ledger``: newest first."""

    items: list[LedgerEntryOut]
    next_cursor: str | None


def encode_position(position: int) -> str:
    """An opaque cursor continuing before ledger position ``position``."""
    return encode_cursor(f"p{position}")


def decode_position(cursor: str | None) -> int | None:
    """The ledger position a cursor continues before.

    Raises:
        InvalidCursorError: the cursor was not issued by :func:`encode_position`.
    """
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position = int(raw[1:]) if raw.startswith("p") else -1
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError() from None
    if position < 1:
        raise InvalidCursorError()
    return position


class OrderLineIn(_Strict):
    """One line of ``POST /orders``."""

    sku: str = Field(pattern=f"^{SKU_PATTERN.pattern}$")
    quantity: int = _QUANTITY


class OrderIn(_Strict):
    """``POST /orders``: each SKU at most once."""

    items: list[OrderLineIn] = Field(min_length=1, max_length=MAX_LINES)


class OrderAccepted(BaseModel):
    """The answer to ``POST /orders`` (202): prices are fixed, the saga runs."""

    id: UUID
    status: str
    total: int
    currency: str


class CancelAccepted(BaseModel):
    """The answer to ``POST /orders/{id}/cancel`` (202)."""

    id: UUID
    status: str


class OrderLineOut(BaseModel):
    """One line of an order, at the price fixed when it was accepted."""

    sku: str
    quantity: int
    price: int


class StepOut(BaseModel):
    """Where one saga step is."""

    name: str
    status: str
    attempts: int


class OrderOut(BaseModel):
    """``GET /orders/{id}``: the order and the steps of its sagas."""

    id: UUID
    status: str
    items: list[OrderLineOut]
    total: int
    currency: str
    failure_reason: str | None = None
    steps: list[StepOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: OrderRecord, sagas: list[SagaRecord]) -> OrderOut:
        """The API view of an order and its sagas (PlaceOrder's steps, then CancelOrder's)."""
        return cls(
            id=order.id,
            status=order.status,
            items=[
                OrderLineOut(sku=i.sku, quantity=i.quantity, price=i.price) for i in order.items
            ],
            total=order.total,
            currency=order.currency,
            failure_reason=order.failure_reason,
            steps=[StepOut(**s) for saga in sagas for s in json.loads(saga.steps)],
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class SagaLogOut(BaseModel):
    """One transition of a saga."""

    step: str
    transition: str
    attempt: int
    detail: str | None
    at: datetime


class SagaOut(BaseModel):
    """A saga instance, as operators see it (with its step log when asked for one)."""

    id: UUID
    kind: str
    order_id: UUID
    status: str
    failure_reason: str | None
    error: str | None
    steps: list[StepOut]
    trace_id: str
    created_at: datetime
    updated_at: datetime
    log: list[SagaLogOut] | None = None

    @classmethod
    def of(cls, saga: SagaRecord, log: list[SagaLogRecord] | None = None) -> SagaOut:
        """The API view of a saga."""
        entries = None
        if log is not None:
            entries = [
                SagaLogOut(
                    step=e.step,
                    transition=e.transition,
                    attempt=e.attempt,
                    detail=e.detail,
                    at=e.at,
                )
                for e in log
            ]
        return cls(
            id=saga.id,
            kind=saga.kind,
            order_id=saga.order_id,
            status=saga.status,
            failure_reason=saga.failure_reason,
            error=saga.error,
            steps=[StepOut(**s) for s in json.loads(saga.steps)],
            trace_id=saga.trace_id,
            created_at=saga.created_at,
            updated_at=saga.updated_at,
            log=entries,
        )


class SagaPage(BaseModel):
    """``GET /admin/sagas``: the most recently changed first."""

    items: list[SagaOut]
    next_cursor: str | None


class OrderSummaryOut(BaseModel):
    """One order in ``GET /orders`` (the read model: may trail writes by a moment)."""

    id: UUID
    status: str
    total: int
    currency: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: OrderViewRecord) -> OrderSummaryOut:
        """The API view of an order of the read model."""
        return cls(
            id=view.id,
            status=view.status,
            total=view.total,
            currency=view.currency,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class OrderPage(BaseModel):
    """``GET /orders``: the caller's orders, newest first."""

    items: list[OrderSummaryOut]
    next_cursor: str | None


class DeadLetterOut(BaseModel):
    """One dead letter as operators see it."""

    id: UUID
    group: str
    event_id: UUID
    type: str
    aggregate_id: str
    trace_id: str
    error: str
    deliveries: int
    dead_at: datetime
    replayed_at: datetime | None

    @classmethod
    def of(cls, d: DeadLetterRecord) -> DeadLetterOut:
        """The view of a record."""
        e = d.event
        return cls(
            id=d.id,
            group=d.consumer,
            event_id=e.id,
            type=e.type,
            aggregate_id=e.aggregate_id,
            trace_id=e.trace_id,
            error=d.error,
            deliveries=d.deliveries,
            dead_at=d.dead_at,
            replayed_at=d.replayed_at,
        )


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first."""

    items: list[DeadLetterOut]
    next_cursor: str | None
