"""Payments' pure rules: money movements and the two ledger entries each one makes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from actors._ops import MAX_AMOUNT, Operation
from actors.payments.errors import BalanceLimitError, InsufficientFundsError, InvalidAmountError
from storage.records import LedgerEntryRecord, WalletRecord

MAX_BALANCE = 10**15  # the most one wallet holds, in minor units
MAX_REFERENCE = 255
# The other side of each kind of movement: money enters from funding and leaves to revenue.
COUNTER_ACCOUNT = {
    "credit": "system:funding",
    "debit": "system:revenue",
    "refund": "system:revenue",
}
WALLET_ACCOUNT = "wallet"
MONEY_EVENTS = {"credit": "WalletCredited", "debit": "WalletDebited", "refund": "WalletRefunded"}


def check_amount(amount: int, field: str = "amount") -> int:
    """Return ``amount`` when it is a whole amount 1..MAX_AMOUNT.

    Raises:
        InvalidAmountError: it is not.
    """
    if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
        raise InvalidAmountError(field, f"must be an integer 1..{MAX_AMOUNT}")
    return amount


@dataclass(frozen=True, slots=True)
class MoneyCommand:
    """Move ``amount`` into (credit, refund) or out of (debit) ``wallet_id``'s wallet.

    Attributes:
        op: the idempotency key and fingerprint.
        wallet_id: the wallet's user.
        kind: ``credit``, ``debit`` or ``refund``.
        amount: minor units, 1..MAX_AMOUNT.
        reference: why (a credit's reason; the order for debits and refunds).
        undoes: the operation a compensating refund undoes (a debit): it applies only if
            that one did, and fences it if it never arrived.
    """

    op: Operation
    wallet_id: UUID
    kind: str
    amount: int
    reference: str
    undoes: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in COUNTER_ACCOUNT:
            raise InvalidAmountError("kind", f"must be one of {sorted(COUNTER_ACCOUNT)}")
        check_amount(self.amount)
        if not 1 <= len(self.reference.strip()) <= MAX_REFERENCE:
            raise InvalidAmountError("reason", f"must be 1..{MAX_REFERENCE} characters")


def move(wallet: WalletRecord, command: MoneyCommand, now: datetime) -> WalletRecord:
    """The wallet after ``command``.

    Raises:
        InsufficientFundsError: a debit larger than the balance.
        BalanceLimitError: a credit or refund past :data:`MAX_BALANCE`.
    """
    wallet_id = str(wallet.user_id)
    if command.kind == "debit":
        if wallet.balance < command.amount:
            raise InsufficientFundsError(wallet_id, wallet.balance, command.amount)
        return replace(wallet, balance=wallet.balance - command.amount, updated_at=now)
    if wallet.balance + command.amount > MAX_BALANCE:
        raise BalanceLimitError(wallet_id, MAX_BALANCE)
    return replace(wallet, balance=wallet.balance + command.amount, updated_at=now)


def entries(after: WalletRecord, command: MoneyCommand) -> tuple[LedgerEntryRecord, ...]:
    """The movement's two entries: the wallet's side and the system account's; they sum to 0."""
    movement = uuid.uuid4()
    signed = -command.amount if command.kind == "debit" else command.amount
    reference = command.reference.strip()
    return (
        LedgerEntryRecord(
            id=uuid.uuid4(),
            movement_id=movement,
            account=WALLET_ACCOUNT,
            wallet_id=after.user_id,
            amount=signed,
            balance_after=after.balance,
            kind=command.kind,
            reference=reference,
        ),
        LedgerEntryRecord(
            id=uuid.uuid4(),
            movement_id=movement,
            account=COUNTER_ACCOUNT[command.kind],
            wallet_id=None,
            amount=-signed,
            balance_after=None,
            kind=command.kind,
            reference=reference,
        ),
    )


def money_event(command: MoneyCommand, after: WalletRecord) -> dict[str, Any]:
    """The payload of a movement's event: what moved, why, and the balance after it."""
    return {
        "user_id": str(command.wallet_id),
        "amount": command.amount,
        "balance": after.balance,
        "reference": command.reference.strip(),
        "operation": command.op.key,
    }


def wallet_view(wallet: WalletRecord, currency: str) -> dict[str, Any]:
    """A wallet as callers see it, as JSON-ready values."""
    return {
        "user_id": str(wallet.user_id),
        "balance": wallet.balance,
        "currency": currency,
        "updated_at": wallet.updated_at.isoformat(),
    }
