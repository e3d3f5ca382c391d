"""Orchestrator use cases for one shard: accept orders and cancellations, run their sagas.

An orchestrator shard owns the orders of its partitions (by order id), like an inventory
shard owns SKUs: it is their only writer. Accepting an order is one batched transaction
(the order, its saga, the saga's first log entries, ``OrderPlaced``, and the outcome under
the request's idempotency key); then the saga engine runs it. When the shard starts (also
after a crash), it loads every unfinished saga of its partitions and resumes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from actors._ops import (
    MAX_AMOUNT,
    IdempotencyConflictError,
    Operation,
    OperationInProgressError,
    Outcome,
    Refusal,
    WrongShardError,
)
from actors._writer import Coalescer, replay
from actors.inventory.model import check_quantity, check_sku
from actors.placement import Partitioning
from sagas.definition import PENDING as STEP_PENDING
from sagas.definition import RUNNING, RetryPolicy, SagaState, StepState
from sagas.engine import Checkpoint, SagaEngine, SagaObserver
from sagas.errors import InvalidOrderError, OrderStateError, UnknownOrderError
from sagas.journal import UnitOfWorkJournal
from sagas.orders import (
    CANCEL_ORDER,
    CONFIRMED,
    PENDING,
    PLACE_ORDER,
    OrderSteps,
    order_sagas,
    order_view,
)
from storage.errors import StaleWriteError
from storage.ports import UnitOfWork, UnitOfWorkFactory
from storage.records import OperationRecord, OrderLine, OrderRecord

MAX_LINES = 50  # lines in one order
_ORDER_IDS = uuid.UUID("6f1c1f7e-5d0b-4a43-9a51-8d3a1c2b7e10")  # namespace of order ids
Result = Outcome | Exception


def order_id_for(key: str) -> UUID:
    """The id of the order placed under idempotency key ``key`` (the same key, the same id)."""
    return uuid.uuid5(_ORDER_IDS, key)


def cancel_saga_id(order_id: UUID) -> UUID:
    """The id of an order's CancelOrder saga (an order is cancelled at most once)."""
    return uuid.uuid5(order_id, "cancel")


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Place an order of ``items`` (``(sku, quantity)``, each SKU once) for ``user_id``."""

    op: Operation
    user_id: UUID
    items: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.items) <= MAX_LINES:
            raise InvalidOrderError("items", f"must have 1..{MAX_LINES} lines")
        for index, (sku, quantity) in enumerate(self.items):
            check_sku(sku)
            check_quantity(quantity, f"items.{index}.quantity")
        if len({sku for sku, _ in self.items}) != len(self.items):
            raise InvalidOrderError("items", "each sku may appear once")

    @property
    def order_id(self) -> UUID:
        """The order's id."""
        return order_id_for(self.op.key)


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel ``order_id`` for ``user_id`` (``any_owner``: also another user's order)."""

    op: Operation
    order_id: UUID
    user_id: UUID
    any_owner: bool = False


OrderCommand = PlaceOrder | CancelOrder


@dataclass(slots=True)
class _Accepted:
    """What one batch of accepted commands writes."""

    orders: list[OrderRecord] = field(default_factory=list)
    sagas: list[SagaState] = field(default_factory=list)
    openings: list[Checkpoint] = field(default_factory=list)
    records: list[OperationRecord] = field(default_factory=list)

    async def store(self, uow: UnitOfWork) -> None:
        events = [e for c in self.openings for e in c.events]
        recorded = await uow.operations.record(self.records, events)
        if len(recorded) != len(self.records):
            raise StaleWriteError("operations recorded meanwhile by another writer")
        await uow.orders.add_many(self.orders)
        await uow.orders.save_many([c.order for c in self.openings if c.order is not None])
        await uow.sagas.add_many([c.saga for c in self.openings])
        await uow.sagas.append_log([e for c in self.openings for e in c.log])


class OrchestratorService:
    """Owns the orders of one shard's partitions and runs their sagas.

    Args:
        shard: this shard's index.
        partitioning: the partition layout of orders.
        uow: makes units of work.
        steps: the saga actions, over the inventory and wallet shards.
        currency: the deployment's one currency.
        saga_timeout_s: how long PlaceOrder may take before it fails with ``timeout``.
        step_timeout_s: the longest one try of one step may take.
        retry: tries of each step (see :func:`sagas.orders.order_sagas`).
        observer: told about every saga transition (metrics).
        clock: the time.
    """

    kind = "orders"

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        uow: UnitOfWorkFactory,
        steps: OrderSteps,
        *,
        currency: str = "USD",
        saga_timeout_s: float = 30.0,
        step_timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
        observer: SagaObserver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.shard = shard
        self._partitioning = partitioning
        self._uow = uow
        self._currency = currency
        self._saga_timeout = timedelta(seconds=saga_timeout_s)
        self._clock = clock
        self._journal = UnitOfWorkJournal(uow)
        definitions = order_sagas(steps, timeout_s=step_timeout_s, retry=retry)
        self.engine = SagaEngine(definitions, self._journal, clock=clock, observer=observer)
        self._queue: Coalescer[OrderCommand, Result] = Coalescer(self._accept, max_batch=256)

    @property
    def entities(self) -> dict[UUID, SagaState]:
        """The sagas held in memory (running, or STUCK)."""
        return {s.id: s for s in self.engine.held()}

    def owns(self, order_id: UUID) -> bool:
        """Whether this shard owns ``order_id``."""
        return self._partitioning.owner_of(str(order_id)) == self.shard

    async def resume(self) -> int:
        """Load and resume every unfinished saga of this shard's partitions; how many."""
        async with self._uow() as uow:
            found = await uow.sagas.unfinished(self._partitioning.partitions_of(self.shard))
        for record in found:
            self.engine.start(SagaState.from_record(record))
        return len(found)

    async def submit(self, commands: Sequence[OrderCommand]) -> list[Result]:
        """Accept each command (one transaction for all queued); one outcome each."""
        pending = [self._queue.enqueue(c) for c in commands]
        results: list[Result] = []
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if not isinstance(result, Outcome | Exception):
                raise result
            results.append(result)
        return results

    async def wait(self, order_ids: Iterable[UUID], timeout_s: float) -> None:
        """Return when no saga of ``order_ids`` runs here any more, or after ``timeout_s``."""
        wanted = set(order_ids)
        await self.engine.wait(
            (s.id for s in self.engine.held() if s.order_id in wanted), timeout_s
        )

    async def drained(self) -> None:
        """Stop: accept nothing queued after this, and stop the sagas (they resume elsewhere)."""
        await self._queue.drained()
        await self.engine.stop()
        await self._journal.drained()

    async def _accept(self, batch: list[OrderCommand]) -> list[Result]:
        results: list[Result | None] = [None] * len(batch)
        todo = self._admissible(batch, results)
        accepted = _Accepted()
        if todo:
            async with self._uow() as uow:
                fresh = await self._replays(uow, batch, todo, results)
                await self._decide(uow, [batch[i] for i in fresh], fresh, results, accepted)
                await accepted.store(uow)
                await uow.commit()
        for saga in accepted.sagas:
            self.engine.start(saga)
        return [r if r is not None else StaleWriteError("unanswered") for r in results]

    def _admissible(self, batch: list[OrderCommand], results: list[Result | None]) -> list[int]:
        todo, seen = [], set()
        for i, command in enumerate(batch):
            order_id = command.order_id
            if not self.owns(order_id):
                shards = self._partitioning.shards
                results[i] = WrongShardError(str(order_id), self.shard, shards)
            elif command.op.key in seen:
                results[i] = OperationInProgressError(command.op.key)
            else:
                seen.add(command.op.key)
                todo.append(i)
        return todo

    async def _replays(
        self,
        uow: UnitOfWork,
        batch: list[OrderCommand],
        todo: list[int],
        results: list[Result | None],
    ) -> list[int]:
        """Answer repeated keys with their first outcome; return the others."""
        stored = await uow.operations.get_many([batch[i].op.key for i in todo])
        fresh = []
        for i in todo:
            if (found := stored.get(batch[i].op.key)) is not None:
                results[i] = replay(batch[i].op, found)
            else:
                fresh.append(i)
        return fresh

    async def _decide(
        self,
        uow: UnitOfWork,
        commands: list[OrderCommand],
        indexes: list[int],
        results: list[Result | None],
        accepted: _Accepted,
    ) -> None:
        places = [c for c in commands if isinstance(c, PlaceOrder)]
        skus = sorted({sku for c in places for sku, _ in c.items})
        prices = {p.sku: p.price for p in await uow.products.get_many(skus)} if skus else {}
        wanted = [c.order_id for c in commands]
        orders = {o.id: o for o in await uow.orders.get_many(wanted)}
        now = self._clock()
        for i, command in zip(indexes, commands, strict=True):
            try:
                if isinstance(command, PlaceOrder) and command.order_id in orders:
                    # Its key's stored outcome has expired (retention) but the order stays:
                    # the same key can never place a second order.
                    results[i] = IdempotencyConflictError(command.op.key)
                    continue
                if isinstance(command, PlaceOrder):
                    outcome = self._place(command, prices, now, accepted)
                else:
                    outcome = self._cancel(command, orders, now, accepted)
            except Refusal as refusal:
                outcome = Outcome(refusal=refusal)
            except InvalidOrderError as exc:
                results[i] = exc  # not recorded: a corrected retry is a fresh attempt
                continue
            results[i] = outcome
            op = command.op
            accepted.records.append(OperationRecord(op.key, op.fingerprint, outcome.to_json()))

    def _place(
        self, cmd: PlaceOrder, prices: dict[str, int], now: datetime, accepted: _Accepted
    ) -> Outcome:
        lines = tuple(OrderLine(sku, qty, prices.get(sku, 0)) for sku, qty in cmd.items)
        total = sum(line.price * line.quantity for line in lines)
        if total > MAX_AMOUNT:
            raise InvalidOrderError("items", f"the order's total must be at most {MAX_AMOUNT}")
        order = OrderRecord(
            id=cmd.order_id,
            user_id=cmd.user_id,
            status=PENDING,
            items=lines,
            total=total,
            currency=self._currency,
            failure_reason=None,
            trace_id=cmd.op.trace_id,
            created_at=now,
            updated_at=now,
        )
        accepted.orders.append(order)
        self._open(accepted, PLACE_ORDER, order, saga_id=order.id, trace_id=order.trace_id, now=now)
        view = {"id": str(order.id), "status": PENDING, "total": total, "currency": self._currency}
        return Outcome(value=view)

    def _cancel(
        self, cmd: CancelOrder, orders: dict[UUID, OrderRecord], now: datetime, accepted: _Accepted
    ) -> Outcome:
        order = orders.get(cmd.order_id)
        if order is None or (order.user_id != cmd.user_id and not cmd.any_owner):
            raise UnknownOrderError(str(cmd.order_id))
        if order.status != CONFIRMED:
            raise OrderStateError(str(order.id), order.status)
        saga_id = cancel_saga_id(order.id)
        orders[order.id] = replace(order, status="CANCELLING")  # a second cancel in the batch: 409
        trace_id = cmd.op.trace_id
        self._open(accepted, CANCEL_ORDER, order, saga_id=saga_id, trace_id=trace_id, now=now)
        return Outcome(value={"id": str(order.id), "status": "CANCELLING"})

    def _open(
        self,
        accepted: _Accepted,
        kind: str,
        order: OrderRecord,
        *,
        saga_id: UUID,
        trace_id: str,
        now: datetime,
    ) -> None:
        """Open a saga of ``kind`` on ``order``: its first checkpoint joins the batch."""
        names = [s.name for s in self.engine.definition(kind).steps]
        saga = SagaState(
            id=saga_id,
            kind=kind,
            order_id=order.id,
            partition=self._partitioning.partition_of(str(order.id)),
            status=RUNNING,
            steps=[StepState(name, STEP_PENDING) for name in names],
            data={"order": order_view(order)},
            trace_id=trace_id,
            deadline=now + self._saga_timeout,
            created_at=now,
            updated_at=now,
        )
        accepted.sagas.append(saga)
        accepted.openings.append(self.engine.opening(saga))
