"""Payments errors. Each survives pickling, because it crosses Ray process boundaries.

Refusals (:class:`actors._ops.Refusal`) are business answers, recorded with the operation
and given again for a repeated key; the others are failures of the call itself.
"""

from __future__ import annotations

from actors._ops import FieldError, Refusal


class PaymentsError(Exception):
    """Root of payments failures.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    retryable = False


class InvalidAmountError(FieldError, PaymentsError):
    """An amount or a reference breaks the rules of money."""


class UnknownWalletError(PaymentsError, Refusal):
    """No wallet (no user) has that id."""

    code = "unknown_wallet"

    def __init__(self, wallet_id: str) -> None:
        Refusal.__init__(self, wallet_id=wallet_id)
        self.wallet_id = wallet_id


class InsufficientFundsError(PaymentsError, Refusal):
    """The wallet holds less than the debit asks for."""

    code = "insufficient_funds"

    def __init__(self, wallet_id: str, balance: int, requested: int) -> None:
        Refusal.__init__(self, wallet_id=wallet_id, balance=balance, requested=requested)
        self.wallet_id = wallet_id
        self.balance = balance
        self.requested = requested


class BalanceLimitError(PaymentsError, Refusal):
    """The credit would take the balance past the largest balance kept."""

    code = "balance_limit"

    def __init__(self, wallet_id: str, limit: int) -> None:
        Refusal.__init__(self, wallet_id=wallet_id, limit=limit)
        self.wallet_id = wallet_id
        self.limit = limit
