"""Saga errors. Each survives pickling, because it crosses Ray process boundaries."""

from __future__ import annotations

from actors._ops import FieldError, Refusal


class SagaError(Exception):
    """Root of saga failures.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    retryable = False


class StepFailedError(SagaError):
    """A step's action met a business rule that says no: the saga fails and compensates.

    Not retried: the same action with the same key would give the same answer.

    Attributes:
        reason: the failure reason the order shows (``out_of_stock``, ...).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidOrderError(FieldError, SagaError):
    """An order's items break the rules (too many lines, a total over the limit)."""


class UnknownOrderError(SagaError, Refusal):
    """No such order, or the caller may not see it (answered as 404)."""

    code = "unknown_order"

    def __init__(self, order_id: str) -> None:
        Refusal.__init__(self, order_id=order_id)
        self.order_id = order_id


class OrderStateError(SagaError, Refusal):
    """The order's status does not allow the change (cancel a PENDING order: 409)."""

    code = "order_state"

    def __init__(self, order_id: str, status: str) -> None:
        Refusal.__init__(self, order_id=order_id, status=status)
        self.order_id = order_id
        self.status = status


class UnknownSagaError(SagaError):
    """No saga has that id (404)."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(saga_id)
        self.saga_id = saga_id


class SagaStateError(SagaError):
    """An operator's command does not fit the saga's state (retry a COMPLETED saga: 409)."""

    def __init__(self, saga_id: str, status: str, detail: str) -> None:
        super().__init__(saga_id, status, detail)
        self.saga_id = saga_id
        self.status = status
        self.detail = detail
