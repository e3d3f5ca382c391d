"""The contracts of the order and saga ports: fakes and PostgreSQL.

Every test makes its own users and orders, so it neither sees nor disturbs other rows of a
shared database.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from storage.ports import UnitOfWorkFactory
from storage.records import OrderLine, OrderRecord, SagaLogRecord, SagaRecord
from tests.contracts.auth_repositories import user

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


async def an_order(uow: UnitOfWorkFactory, status: str = "PENDING") -> OrderRecord:
    """A stored order of a new user."""
    async with uow() as tx:
        owner = await tx.users.add(user())
        order = OrderRecord(
            uuid.uuid4(), owner.id, status, (OrderLine("SKU-1", 2, 150),), 300, "USD", None,
            "trace-1", T0, T0,
        )  # fmt: skip
        assert await tx.orders.add_many([order]) == {order.id}
        await tx.commit()
    return order


def saga_of(order: OrderRecord, status: str = "RUNNING", minute: int = 0) -> SagaRecord:
    at = T0 + timedelta(minutes=minute)
    return SagaRecord(
        order.id, "place_order", order.id, 3, status, "[]", "{}", None, None, "trace-1",
        at + timedelta(seconds=30), at, at,
    )  # fmt: skip


class OrderRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def test_an_order_is_added_once_and_read_back_whole(self, uow: UnitOfWorkFactory) -> None:
        order = await an_order(uow)
        async with uow() as tx:
            assert await tx.orders.add_many([replace(order, total=1)]) == set()
            assert await tx.orders.get(order.id) == order
            assert await tx.orders.get_many([order.id, uuid.uuid4()]) == [order]

    async def test_a_status_only_moves_forward(self, uow: UnitOfWorkFactory) -> None:
        order = await an_order(uow)
        steps = [("CONFIRMED", True), ("CANCELLING", True), ("CONFIRMED", False),
                 ("PENDING", False), ("CANCELLED", True), ("CANCELLING", False)]  # fmt: skip
        for minute, (status, moves) in enumerate(steps, start=1):
            before = await self._status(uow, order.id)
            async with uow() as tx:
                changed = replace(order, status=status, updated_at=T0 + timedelta(minutes=minute))
                await tx.orders.save_many([changed])
                await tx.commit()
            assert await self._status(uow, order.id) == (status if moves else before)

    @staticmethod
    async def _status(uow: UnitOfWorkFactory, order_id: uuid.UUID) -> str:
        async with uow() as tx:
            found = await tx.orders.get(order_id)
        assert found is not None
        return found.status


class SagaRepositoryContract:
    """Subclasses (or their module) provide a ``uow`` fixture returning a UnitOfWorkFactory."""

    async def test_a_saga_is_saved_logged_and_listed_unfinished(
        self, uow: UnitOfWorkFactory
    ) -> None:
        order = await an_order(uow)
        saga = saga_of(order)
        entry = SagaLogRecord(saga.id, "reserve_stock", "started", 0, None, "trace-1", T0)
        async with uow() as tx:
            await tx.sagas.add_many([saga])
            await tx.sagas.append_log([entry, replace(entry, transition="succeeded", attempt=1)])
            await tx.commit()
        async with uow() as tx:
            assert await tx.sagas.get(saga.id) == saga
            assert saga in await tx.sagas.unfinished([3])
            assert saga not in await tx.sagas.unfinished([4])
            assert [e.transition for e in await tx.sagas.log_of(saga.id)] == [
                "started",
                "succeeded",
            ]
        done = replace(saga, status="COMPLETED", updated_at=T0 + timedelta(minutes=1))
        async with uow() as tx:
            await tx.sagas.save_many([done])
            await tx.commit()
        async with uow() as tx:
            assert await tx.sagas.get(saga.id) == done
            assert done not in await tx.sagas.unfinished([3])
            assert await tx.sagas.of_order(order.id) == [done]
            completed = await tx.sagas.list_page("COMPLETED", None, 1000)
            assert done in completed
