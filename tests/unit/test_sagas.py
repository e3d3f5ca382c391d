"""The order sagas on in-process shards: outcomes, compensation, retries, crashes, operators."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest

from actors._ops import FencedRefusal, IdempotencyConflictError, Operation, Outcome
from actors.inventory.model import CreateProduct, NewProduct, StockCommand
from actors.inventory.service import InventoryService
from actors.payments.model import MoneyCommand
from actors.payments.service import WalletService
from actors.placement import Partitioning
from sagas.definition import RetryPolicy
from sagas.errors import InvalidOrderError, OrderStateError, SagaStateError, UnknownOrderError
from sagas.orchestrator import CancelOrder, OrchestratorService, PlaceOrder, cancel_saga_id
from sagas.orders import OrderSteps
from storage.errors import StorageUnavailableError
from tests.contracts.auth_repositories import user
from tests.fakes import FakeProductCache, FakeUnitOfWorkFactory

LAYOUT = Partitioning(partitions=8, shards=1)
FAST = RetryPolicy(max_attempts=3, base_s=0, max_s=0)


class InProcess:
    """A shard client that calls a shard service in this process, and can be made to fail.

    Attributes:
        failures: how many of the next calls raise ``failure`` before reaching the shard.
        lost: how many of the next calls reach the shard and then lose their answer.
        hold: when set, calls wait for it before reaching the shard.
        broken: commands for which it says yes fail with ``failure``, as long as it does.
    """

    def __init__(self, service: Any) -> None:
        self.service = service
        self.failures = 0
        self.lost = 0
        self.failure: Exception = StorageUnavailableError("shard unreachable")
        self.hold: asyncio.Event | None = None
        self.calls: list[Any] = []
        self.broken: Any = lambda command: False
        self._arrived = asyncio.Event()

    async def arrived(self, kind: str, count: int = 1) -> None:
        """Return once ``count`` commands of ``kind`` have arrived."""
        while sum(c.kind == kind for c in self.calls) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def apply(self, key: str, command: Any) -> Outcome:
        self.calls.append(command)
        self._arrived.set()
        if self.broken(command):
            raise self.failure
        if self.failures:
            self.failures -= 1
            raise self.failure
        if self.hold is not None:
            await self.hold.wait()
        result: Outcome | Exception = (await self.service.submit([command]))[0]
        if isinstance(result, Exception):
            raise result
        if self.lost:
            self.lost -= 1
            raise StorageUnavailableError("reply lost")
        return result


class World:
    """A fake database with inventory, wallet and orchestrator services over it."""

    def __init__(self) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.inventory = InProcess(InventoryService(0, LAYOUT, self.uow, FakeProductCache()))
        self.wallets = InProcess(WalletService(0, LAYOUT, self.uow))
        self.orchestrator = self.restart()

    def restart(self) -> OrchestratorService:
        """A new orchestrator process on the same database."""
        steps = OrderSteps(self.inventory, self.wallets)
        self.orchestrator = OrchestratorService(
            0, LAYOUT, self.uow, steps, retry=FAST, step_timeout_s=1.0
        )
        return self.orchestrator

    async def customer(self, balance: int) -> uuid.UUID:
        account = user()
        async with self.uow() as tx:
            await tx.users.add(account)
            await tx.wallets.add(account.id)
            await tx.commit()
        if balance:
            op = Operation.once({"credit": balance})
            credit = MoneyCommand(op, account.id, "credit", balance, "top up")
            (await self.wallets.apply(str(account.id), credit)).unwrap()
        return account.id

    async def product(self, stock: int, price: int = 100) -> str:
        sku = f"SKU-{uuid.uuid4().hex[:8]}"
        new = NewProduct(sku, "Tea", price, "USD", stock)
        (await self.inventory.apply(sku, CreateProduct(Operation.once({"sku": sku}), new))).unwrap()
        return sku

    async def place(
        self, user_id: uuid.UUID, items: list[tuple[str, int]], key: str | None = None
    ) -> Outcome:
        request = {"items": items}
        op = Operation.of(key or uuid.uuid4().hex, request)
        [result] = await self.orchestrator.submit([PlaceOrder(op, user_id, tuple(items))])
        assert isinstance(result, Outcome), result
        return result

    async def cancel(self, order_id: str, user_id: uuid.UUID) -> Outcome | Exception:
        op = Operation.once({"cancel": order_id})
        [result] = await self.orchestrator.submit([CancelOrder(op, uuid.UUID(order_id), user_id)])
        return result

    async def settled(self, order_id: str) -> dict[str, Any]:
        await self.orchestrator.wait([uuid.UUID(order_id)], 5)
        order = self.uow.orders[uuid.UUID(order_id)]
        return {"status": order.status, "reason": order.failure_reason}

    def stock(self, sku: str) -> tuple[int, int]:
        row = self.uow.rows[sku]
        return row.available, row.reserved

    def balance(self, user_id: uuid.UUID) -> int:
        return self.uow.wallets[user_id].balance

    def events(self, order_id: str) -> list[str]:
        found = [e for e in self.uow.outbox.values() if e.aggregate_id == order_id]
        return [e.type for e in sorted(found, key=lambda e: e.seq)]


@pytest.fixture
def world() -> World:
    return World()


async def test_an_order_reserves_debits_and_confirms(world: World) -> None:
    buyer, tea, mug = (
        await world.customer(1000),
        await world.product(5, 100),
        await world.product(3, 250),
    )
    placed = await world.place(buyer, [(tea, 2), (mug, 1)])
    assert placed.unwrap()["status"] == "PENDING" and placed.unwrap()["total"] == 450
    order_id = placed.unwrap()["id"]
    assert await world.settled(order_id) == {"status": "CONFIRMED", "reason": None}
    assert world.stock(tea) == (3, 0) and world.stock(mug) == (2, 0)
    assert world.balance(buyer) == 550
    assert world.events(order_id) == [
        "OrderPlaced", "OrderConfirmed"
    ]  # fmt: skip
    saga = world.uow.sagas[uuid.UUID(order_id)]
    assert saga.status == "COMPLETED"
    steps = json.loads(saga.steps)
    assert [s["name"] for s in steps] == ["reserve_stock", "debit_wallet", "confirm_order"]
    assert {s["status"] for s in steps} == {"SUCCEEDED"}
    log = [(e.step, e.transition) for e in world.uow.saga_log.values() if e.saga_id == saga.id]
    assert log[:2] == [("-", "created"), ("reserve_stock", "started")]
    assert log[-1] == ("-", "completed")


@pytest.mark.parametrize(
    ("stock", "balance", "reason"),
    [(1, 1000, "out_of_stock"), (5, 150, "insufficient_funds")],
)
async def test_a_refused_step_undoes_the_earlier_ones(
    world: World, stock: int, balance: int, reason: str
) -> None:
    buyer, tea, mug = (
        await world.customer(balance),
        await world.product(5),
        await world.product(stock),
    )
    order_id = (await world.place(buyer, [(tea, 1), (mug, 2)])).unwrap()["id"]
    assert await world.settled(order_id) == {"status": "FAILED", "reason": reason}
    assert world.stock(tea) == (5, 0) and world.stock(mug) == (stock, 0)
    assert world.balance(buyer) == balance
    assert world.events(order_id)[-1] == "OrderFailed"


async def test_an_unknown_product_fails_the_order(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    order_id = (await world.place(buyer, [(tea, 1), ("NO-SUCH-SKU", 1)])).unwrap()["id"]
    assert await world.settled(order_id) == {"status": "FAILED", "reason": "unknown_product"}
    assert world.stock(tea) == (5, 0) and world.balance(buyer) == 1000


async def test_the_same_key_places_one_order_and_another_body_conflicts(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    first = await world.place(buyer, [(tea, 1)], key="k1")
    again = await world.place(buyer, [(tea, 1)], key="k1")
    assert again.replayed and again.unwrap() == first.unwrap()
    await world.settled(first.unwrap()["id"])
    op = Operation.of("k1", {"items": [(tea, 2)]})
    [other] = await world.orchestrator.submit([PlaceOrder(op, buyer, ((tea, 2),))])
    assert isinstance(other, IdempotencyConflictError)
    assert world.stock(tea) == (4, 0) and len(world.uow.orders) == 1


def test_bad_orders_are_refused_before_anything_happens() -> None:
    op = Operation.once({})
    for items in [(), (("A", 1), ("A", 2)), (("A", 0),), (("bad sku", 1),)]:
        with pytest.raises(Exception, match=r"items|sku|quantity"):
            PlaceOrder(op, uuid.uuid4(), items)


async def test_an_order_over_the_amount_limit_is_refused(world: World) -> None:
    buyer, gold = await world.customer(0), await world.product(10**6, price=10**12)
    op = Operation.once({})
    [result] = await world.orchestrator.submit([PlaceOrder(op, buyer, ((gold, 2),))])
    assert isinstance(result, InvalidOrderError)
    assert not world.uow.orders


async def test_transient_failures_are_retried_and_lost_replies_apply_once(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    world.inventory.failures, world.wallets.lost = 2, 1
    order_id = (await world.place(buyer, [(tea, 2)])).unwrap()["id"]
    assert await world.settled(order_id) == {"status": "CONFIRMED", "reason": None}
    assert world.stock(tea) == (3, 0) and world.balance(buyer) == 800
    steps = json.loads(world.uow.sagas[uuid.UUID(order_id)].steps)
    assert [s["attempts"] for s in steps] == [3, 2, 1]


async def test_a_step_that_keeps_failing_times_out_and_fences_its_late_command(
    world: World,
) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    world.wallets.failures = 3  # every try of the debit
    order_id = (await world.place(buyer, [(tea, 2)])).unwrap()["id"]
    assert await world.settled(order_id) == {"status": "FAILED", "reason": "timeout"}
    assert world.stock(tea) == (5, 0) and world.balance(buyer) == 1000
    late = next(c for c in world.wallets.calls if c.kind == "debit")  # arriving after the refund
    assert isinstance((await world.wallets.apply(str(buyer), late)).refusal, FencedRefusal)
    assert world.balance(buyer) == 1000


async def test_a_restarted_orchestrator_resumes_every_unfinished_saga(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(9)
    world.wallets.hold = asyncio.Event()
    placed = [(await world.place(buyer, [(tea, 1)])).unwrap()["id"] for _ in range(3)]
    await world.wallets.arrived("debit", 3)  # reserved, and waiting at the debit
    await world.orchestrator.drained()  # the process dies mid-saga
    world.wallets.hold = None
    resumed = world.restart()
    assert await resumed.resume() == 3
    for order_id in placed:
        assert (await world.settled(order_id))["status"] == "CONFIRMED"
    assert world.stock(tea) == (6, 0) and world.balance(buyer) == 700


async def test_a_confirmed_order_is_cancelled_once_and_put_back(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    order_id = (await world.place(buyer, [(tea, 2)])).unwrap()["id"]
    await world.settled(order_id)
    cancelled = await world.cancel(order_id, buyer)
    assert isinstance(cancelled, Outcome) and cancelled.unwrap()["status"] == "CANCELLING"
    again = await world.cancel(order_id, buyer)
    assert isinstance(again, Outcome) and isinstance(again.refusal, OrderStateError)
    assert await world.settled(order_id) == {"status": "CANCELLED", "reason": None}
    assert world.stock(tea) == (5, 0) and world.balance(buyer) == 1000
    assert world.events(order_id) == [
        "OrderPlaced", "OrderConfirmed", "OrderCancelling", "OrderCancelled"
    ]  # fmt: skip
    stock_events = [e.type for e in world.uow.outbox.values() if e.aggregate_id == tea]
    assert stock_events == [
        "ProductCreated", "StockReserved", "StockCommitted", "StockRestocked"
    ]  # fmt: skip
    wallet_events = [e.type for e in world.uow.outbox.values() if e.aggregate_id == str(buyer)]
    assert wallet_events == ["WalletCredited", "WalletDebited", "WalletRefunded"]
    assert cancel_saga_id(uuid.UUID(order_id)) in world.uow.sagas


async def test_only_the_owner_cancels_and_only_a_confirmed_order(world: World) -> None:
    buyer, other, tea = await world.customer(1000), await world.customer(0), await world.product(5)
    world.wallets.hold = asyncio.Event()
    order_id = (await world.place(buyer, [(tea, 1)])).unwrap()["id"]
    pending = await world.cancel(order_id, buyer)
    assert isinstance(pending, Outcome) and isinstance(pending.refusal, OrderStateError)
    world.wallets.hold.set()
    await world.settled(order_id)
    stranger = await world.cancel(order_id, other)
    assert isinstance(stranger, Outcome) and isinstance(stranger.refusal, UnknownOrderError)


async def test_a_step_that_cannot_be_undone_gets_stuck_until_an_operator_retries(
    world: World,
) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    world.inventory.broken = lambda c: c.kind == "commit"  # the confirmation cannot get through
    order_id = (await world.place(buyer, [(tea, 1)])).unwrap()["id"]
    saga_id = uuid.UUID(order_id)
    await world.orchestrator.wait([saga_id], 5)
    assert world.uow.sagas[saga_id].status == "STUCK"
    assert world.uow.orders[saga_id].status == "PENDING"
    with pytest.raises(SagaStateError):
        await world.orchestrator.engine.abort(saga_id)  # the money is taken: only forward
    world.inventory.broken = lambda c: False
    await world.orchestrator.engine.retry(saga_id)
    assert await world.settled(order_id) == {"status": "CONFIRMED", "reason": None}
    assert world.stock(tea) == (4, 0) and world.balance(buyer) == 900


async def test_an_operator_aborts_a_running_saga_and_everything_is_undone(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    world.wallets.hold = asyncio.Event()
    order_id = (await world.place(buyer, [(tea, 2)])).unwrap()["id"]
    await world.wallets.arrived("debit")
    await world.orchestrator.engine.abort(uuid.UUID(order_id))
    world.wallets.hold.set()
    assert await world.settled(order_id) == {"status": "FAILED", "reason": "aborted"}
    await asyncio.sleep(0)
    assert world.stock(tea) == (5, 0) and world.balance(buyer) == 1000


async def test_a_compensation_that_keeps_failing_gets_stuck_and_retry_finishes_it(
    world: World,
) -> None:
    buyer, tea = await world.customer(0), await world.product(5)
    world.inventory.broken = lambda c: c.kind == "release"  # the undo cannot get through
    order_id = (await world.place(buyer, [(tea, 2)])).unwrap()["id"]
    saga_id = uuid.UUID(order_id)
    await world.orchestrator.wait([saga_id], 5)
    assert world.uow.sagas[saga_id].status == "STUCK"
    assert world.stock(tea) == (3, 2)
    world.inventory.broken = lambda c: False
    await world.orchestrator.engine.retry(saga_id)
    assert await world.settled(order_id) == {"status": "FAILED", "reason": "insufficient_funds"}
    assert world.stock(tea) == (5, 0)


async def test_a_release_that_arrives_before_its_reservation_fences_it(world: World) -> None:
    tea = await world.product(5)
    reserve_key = "saga:x:reserve:" + tea
    release = StockCommand(
        Operation.of("saga:x:release", {}), tea, "release", 2, undoes=reserve_key
    )
    reserve = StockCommand(Operation.of(reserve_key, {"q": 2}), tea, "reserve", 2)
    assert (await world.inventory.apply(tea, release)).unwrap() == {"undone": False}
    assert isinstance((await world.inventory.apply(tea, reserve)).refusal, FencedRefusal)
    assert (await world.inventory.apply(tea, release)).replayed
    assert world.stock(tea) == (5, 0)
    again = replace(reserve, op=Operation.of("k2", {}))
    undo = replace(release, op=Operation.of("k3", {}), undoes="k2")
    both = await world.inventory.service.submit([again, undo])
    assert [isinstance(r, Outcome) and r.refusal is None for r in both] == [True, True]
    assert world.stock(tea) == (5, 0)  # the release in the same batch undid it


async def test_a_key_whose_outcome_expired_cannot_place_a_second_order(world: World) -> None:
    buyer, tea = await world.customer(1000), await world.product(5)
    first = await world.place(buyer, [(tea, 1)], key="reused")
    await world.settled(first.unwrap()["id"])
    key = next(k for k in world.uow.operations if k == "reused")
    del world.uow.operations[key]  # the janitor dropped the outcome after its retention
    op = Operation.of("reused", {"items": [(tea, 1)]})
    [again] = await world.orchestrator.submit([PlaceOrder(op, buyer, ((tea, 1),))])
    assert isinstance(again, IdempotencyConflictError)
    assert world.balance(buyer) == 900 and world.stock(tea) == (4, 0)
