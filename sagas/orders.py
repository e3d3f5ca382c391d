"""The order sagas as data: PlaceOrder and CancelOrder, their steps, and their effects.

PlaceOrder reserves stock for every line (all or nothing), debits the wallet for the total,
and confirms: the reserved units are committed (sold) and the order is CONFIRMED. A failure
before the confirmation undoes the earlier steps in reverse order. The confirmation cannot
be undone, so it is retried until it succeeds (or the saga is STUCK for an operator).

CancelOrder refunds a CONFIRMED order and puts its units back; both steps only go forward.

Every command a step sends carries the key ``saga:<saga id>:<step>[:<sku>]``, so the shards
apply it once however often it is sent; compensations name the key they undo, so they also
work (and fence it) when the action never arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from actors._ops import Operation, Outcome, Refusal
from actors.inventory.errors import OutOfStockError, UnknownProductError
from actors.inventory.model import StockCommand
from actors.payments.errors import InsufficientFundsError, UnknownWalletError
from actors.payments.model import MoneyCommand
from sagas.definition import Effects, RetryPolicy, SagaDefinition, SagaState, Step
from sagas.errors import StepFailedError
from storage.records import OrderLine, OrderRecord

PLACE_ORDER, CANCEL_ORDER = "place_order", "cancel_order"
PENDING, CONFIRMED, FAILED = "PENDING", "CONFIRMED", "FAILED"
CANCELLING, CANCELLED = "CANCELLING", "CANCELLED"
ORDER_STATUSES = (PENDING, CONFIRMED, FAILED, CANCELLING, CANCELLED)
_REASONS: dict[type[Refusal], str] = {
    OutOfStockError: "out_of_stock",
    UnknownProductError: "unknown_product",
    InsufficientFundsError: "insufficient_funds",
    UnknownWalletError: "insufficient_funds",  # no wallet holds no money
}


class ShardClient(Protocol):
    """Sends a command to the shard that owns ``key`` (retrying what is safe to retry)."""

    async def apply(self, key: str, command: Any) -> Outcome:
        """The command's outcome (a refusal is an outcome too)."""
        ...


def order_view(order: OrderRecord) -> dict[str, Any]:
    """An order as events and the saga's data carry it (JSON values)."""
    return {
        "order_id": str(order.id),
        "user_id": str(order.user_id),
        "status": order.status,
        "items": [{"sku": i.sku, "quantity": i.quantity, "price": i.price} for i in order.items],
        "total": order.total,
        "currency": order.currency,
        "failure_reason": order.failure_reason,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


def order_of(view: Mapping[str, Any], trace_id: str) -> OrderRecord:
    """The order record of an :func:`order_view`."""
    return OrderRecord(
        id=UUID(view["order_id"]),
        user_id=UUID(view["user_id"]),
        status=view["status"],
        items=tuple(OrderLine(**line) for line in view["items"]),
        total=view["total"],
        currency=view["currency"],
        failure_reason=view["failure_reason"],
        trace_id=trace_id,
        created_at=datetime.fromisoformat(view["created_at"]),
        updated_at=datetime.fromisoformat(view["updated_at"]),
    )


class OrderSteps:
    """The actions and compensations of the order sagas, over the two kinds of shard.

    Args:
        inventory: reaches the inventory shards.
        wallets: reaches the wallet shards.
    """

    def __init__(self, inventory: ShardClient, wallets: ShardClient) -> None:
        self._inventory = inventory
        self._wallets = wallets

    async def reserve_stock(self, saga: SagaState) -> None:
        """Hold every line's units (all lines are tried; any refusal fails the step)."""
        await self._each_line(saga, "reserve", "reserve")

    async def release_stock(self, saga: SagaState) -> None:
        """Give back what ``reserve_stock`` held (and fence reservations still on the way)."""
        await self._each_line(saga, "release", "release", undoes="reserve")

    async def commit_stock(self, saga: SagaState) -> None:
        """The held units are sold."""
        await self._each_line(saga, "commit", "commit")

    async def return_stock(self, saga: SagaState) -> None:
        """A cancelled order's units are available again."""
        await self._each_line(saga, "return", "restock")

    async def debit_wallet(self, saga: SagaState) -> None:
        """Take the order's total from the customer's wallet."""
        await self._money(saga, "debit", "debit")

    async def refund_wallet(self, saga: SagaState) -> None:
        """Give back what ``debit_wallet`` took (and fence a debit still on the way)."""
        await self._money(saga, "refund", "refund", undoes="debit")

    async def refund_order(self, saga: SagaState) -> None:
        """Give a cancelled order's total back."""
        await self._money(saga, "refund", "refund")

    async def _each_line(
        self, saga: SagaState, step: str, kind: str, undoes: str | None = None
    ) -> None:
        order = saga.data["order"]
        commands = [
            StockCommand(
                op=_op(saga, f"{step}:{line['sku']}", {"kind": kind, **line}),
                sku=line["sku"],
                kind=kind,
                quantity=line["quantity"],
                undoes=_key(saga, f"{undoes}:{line['sku']}") if undoes else None,
            )
            for line in order["items"]
        ]
        outcomes = await asyncio.gather(
            *(self._inventory.apply(c.sku, c) for c in commands), return_exceptions=True
        )
        _settle(outcomes)

    async def _money(
        self, saga: SagaState, step: str, kind: str, undoes: str | None = None
    ) -> None:
        order = saga.data["order"]
        command = MoneyCommand(
            op=_op(saga, step, {"kind": kind, "amount": order["total"]}),
            wallet_id=UUID(order["user_id"]),
            kind=kind,
            amount=order["total"],
            reference=f"order:{order['order_id']}",
            undoes=_key(saga, undoes) if undoes else None,
        )
        _settle([await self._wallets.apply(order["user_id"], command)])


def _key(saga: SagaState, step: str) -> str:
    return f"saga:{saga.id}:{step}"


def _op(saga: SagaState, step: str, request: Mapping[str, Any]) -> Operation:
    return Operation.of(_key(saga, step), request, saga.trace_id)


def _settle(outcomes: list[Outcome | BaseException]) -> None:
    """Raise the step's answer: a business refusal first (final), else any failure."""
    refusals = [o.refusal for o in outcomes if isinstance(o, Outcome) and o.refusal is not None]
    for refusal in refusals:
        if (reason := _REASONS.get(type(refusal))) is not None:
            raise StepFailedError(reason)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    if refusals:
        raise refusals[0]  # a refusal no rule expects (a bug): retried, then STUCK


def _order_effects(saga: SagaState, status: str, reason: str | None = None) -> OrderRecord:
    view = dict(saga.data["order"], status=status, failure_reason=reason)
    view["updated_at"] = saga.updated_at.isoformat()
    saga.data["order"] = view
    return order_of(view, saga.trace_id)


def place_order_effects(saga: SagaState, transition: str, step: str | None) -> Effects:
    """What PlaceOrder's transitions change besides the saga: its order, and order events.

    The steps' own events (``StockReserved``, ``WalletDebited``...) are written by the
    shards, in the transaction of the change.
    """
    if transition == "created":
        return Effects(events=(("OrderPlaced", saga.data["order"]),))
    if transition == "completed":
        order = _order_effects(saga, CONFIRMED)
        return Effects(order=order, events=(("OrderConfirmed", saga.data["order"]),))
    if transition == "failed":
        order = _order_effects(saga, FAILED, saga.failure_reason)
        return Effects(order=order, events=(("OrderFailed", saga.data["order"]),))
    return Effects()


def cancel_order_effects(saga: SagaState, transition: str, step: str | None) -> Effects:
    """What CancelOrder's transitions change besides the saga: its order, and order events."""
    if transition == "created":
        order = _order_effects(saga, CANCELLING)
        return Effects(order=order, events=(("OrderCancelling", saga.data["order"]),))
    if transition == "completed":
        order = _order_effects(saga, CANCELLED)
        return Effects(order=order, events=(("OrderCancelled", saga.data["order"]),))
    return Effects()


def order_sagas(
    steps: OrderSteps, *, timeout_s: float = 5.0, retry: RetryPolicy | None = None
) -> dict[str, SagaDefinition]:
    """The definitions of PlaceOrder and CancelOrder, by kind.

    Args:
        steps: the actions.
        timeout_s: the longest one try of one step may take.
        retry: tries of each action; a step that cannot be undone, and a compensation,
            get more before the saga is STUCK.
    """
    policy = retry or RetryPolicy()
    forever = replace(policy, max_attempts=40)  # cannot be undone: keep trying, then STUCK
    undo = replace(policy, max_attempts=12)

    def step(name: str, action: Any, undo: Any = None, tries: RetryPolicy = policy) -> Step:
        return Step(name, action, undo, retry=tries, timeout_s=timeout_s)

    place = SagaDefinition(
        PLACE_ORDER,
        (
            step("reserve_stock", steps.reserve_stock, steps.release_stock),
            step("debit_wallet", steps.debit_wallet, steps.refund_wallet),
            step("confirm_order", steps.commit_stock, tries=forever),
        ),
        effects=place_order_effects,
        compensation_retry=undo,
    )
    cancel = SagaDefinition(
        CANCEL_ORDER,
        (
            step("refund_payment", steps.refund_order, tries=forever),
            step("return_stock", steps.return_stock, tries=forever),
        ),
        effects=cancel_order_effects,
        compensation_retry=undo,
    )
    return {place.kind: place, cancel.kind: cancel}
