"""Consumer groups on real PostgreSQL and Redis: exactly-once effects, claims, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from actors.events.handlers import ProjectorHandler
from actors.events.worker import EventWorker
from storage.connections import Connections
from storage.products import SqlUnitOfWorkFactory
from storage.read_models import rebuild
from storage.records import EventRecord
from storage.relay import OutboxRelay
from storage.streams import EventStreams
from tests.integration.events_helpers import (
    PARTITIONS,
    append,
    drain,
    make_worker,
    order_event,
    poison,
    reset_bus,
    scalar,
)


class Projector(ProjectorHandler):
    """The projector under a test's own group name, failing on chosen events."""

    def __init__(self, group: str, failing: set[uuid.UUID] | None = None) -> None:
        self.group = group
        self.failing = failing if failing is not None else set()

    async def handle(self, conn: AsyncConnection, events: Sequence[EventRecord]) -> None:
        if any(e.id in self.failing for e in events):
            raise RuntimeError("failing on purpose")
        await super().handle(conn, events)


@pytest.fixture
async def bus(isolated: Connections) -> EventStreams:
    await reset_bus(isolated)
    return EventStreams(isolated.redis, PARTITIONS)


def confirmed_orders(count: int, sku: str) -> list[EventRecord]:
    return [
        e
        for _ in range(count)
        for o in [uuid.uuid4()]
        for e in (
            order_event("OrderPlaced", o, "PENDING", items=[(sku, 2, 50)]),
            order_event("OrderConfirmed", o, "CONFIRMED", items=[(sku, 2, 50)], minute=1),
        )
    ]


async def sales(conn: Connections, sku: str) -> tuple[int, int]:
    async with SqlUnitOfWorkFactory(conn.engine)() as uow:
        found = await uow.order_views.sales([sku])
    return (found[0].units, found[0].revenue) if found else (0, 0)


async def work_until(workers: Sequence[EventWorker], done: object, rounds: int = 200) -> None:
    for _ in range(rounds):
        for w in workers:
            await w.step()
        if await done():  # type: ignore[operator]
            return
    raise AssertionError("workers did not finish")


async def test_redelivered_and_claimed_events_have_one_effect(
    isolated: Connections, bus: EventStreams
) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    events = confirmed_orders(10, sku)
    await append(isolated, events)
    relay = OutboxRelay(isolated.engine, bus, ["g1"])
    await drain(relay)
    handler = Projector("g1")
    await bus.ensure_groups(["g1"])
    dead = make_worker(isolated, handler, "dead")
    taken = await bus.read("g1", "dead", 7, 20)  # read, then "killed" before acking
    assert taken
    live = make_worker(isolated, handler, "live")
    await asyncio.sleep(0.15)  # past claim_idle_ms: the live consumer takes them over
    claimed = await bus.claim("g1", "live", 100, 100)
    assert {d.message_id for d in claimed} == {d.message_id for d in taken}
    assert all(d.deliveries == 2 for d in claimed)
    await live.process(claimed)
    await dead.process(taken)  # the "dead" one comes back and handles them again: no effect
    async with isolated.engine.begin() as c:  # and the relay publishes everything again
        await c.execute(text("UPDATE outbox SET published_at = NULL"))
    await drain(relay)

    async def done() -> bool:
        return sum(v for v in (await bus.lag(["g1"])).values()) == 0

    await work_until([live], done)
    assert await sales(isolated, sku) == (20, 1000)
    recorded = "SELECT count(*) FROM inbox WHERE consumer = 'g1'"
    assert await scalar(isolated, recorded) == len(events)


async def test_flushall_midway_still_reaches_every_group_exactly_once(
    isolated: Connections, bus: EventStreams
) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    first, second = confirmed_orders(5, sku), confirmed_orders(5, sku)
    groups = ["ga", "gb"]
    relay = OutboxRelay(isolated.engine, bus, groups)
    await bus.ensure_groups(groups)
    workers = [make_worker(isolated, Projector(g)) for g in groups]
    await append(isolated, first)
    await drain(relay)
    await workers[0].step()  # ga handles some, gb none
    await isolated.redis.flushdb()  # this test's Redis database only
    await append(isolated, second)
    await drain(relay)

    async def done() -> bool:
        await relay.sweep(0, grace_s=0)
        await drain(relay)
        unrecorded = "SELECT count(*) FROM inbox WHERE consumer = ANY(:g)"
        return await scalar(isolated, unrecorded, g=groups) == 2 * len(first + second)

    await work_until(workers, done)
    # Both groups project into the same tables: each counted every confirmation once.
    assert await sales(isolated, sku) == (2 * 20, 2 * 1000)


async def test_a_poison_event_becomes_a_dead_letter_and_replay_hands_it_back(
    isolated: Connections, bus: EventStreams
) -> None:
    order = uuid.uuid4()
    bad = order_event("OrderPlaced", order, "PENDING")
    await append(isolated, [bad, poison(uuid.uuid4())])
    relay = OutboxRelay(isolated.engine, bus, ["gp"])
    await bus.ensure_groups(["gp"])
    await drain(relay)
    handler = Projector("gp", failing={bad.id})
    worker = make_worker(isolated, handler, max_deliveries=2)
    factory = SqlUnitOfWorkFactory(isolated.engine)

    async def buried() -> bool:
        await asyncio.sleep(0.05)
        async with factory() as uow:
            return len(await uow.dead_letters.list_page(None, 10)) == 2

    await work_until([worker], buried)
    assert sum((await bus.lag(["gp"])).values()) == 0  # acknowledged
    async with factory() as uow:
        letters = await uow.dead_letters.list_page(None, 10)
        assert {d.deliveries for d in letters} == {2}
        letter = next(d for d in letters if d.event.id == bad.id)
        replayed = await uow.dead_letters.replay(letter.id, datetime.now(UTC))
        again = await uow.dead_letters.replay(letter.id, datetime.now(UTC))
        await uow.commit()
    assert replayed is not None and again is not None
    assert replayed.replayed_at == again.replayed_at
    handler.failing.clear()
    await drain(relay)

    async def projected() -> bool:
        async with factory() as uow:
            return bool(await uow.order_views.of_user(uuid.UUID(int=1), None, 100))

    await work_until([worker], projected)


async def test_newer_status_wins_and_rebuild_matches_the_events(
    isolated: Connections, bus: EventStreams
) -> None:
    user, order = uuid.uuid4(), uuid.uuid4()
    events = [
        order_event(kind, order, status, user_id=user, minute=m)
        for m, (kind, status) in enumerate(
            [("OrderPlaced", "PENDING"), ("OrderConfirmed", "CONFIRMED"),
             ("OrderCancelling", "CANCELLING"), ("OrderCancelled", "CANCELLED")]
        )
    ]  # fmt: skip
    handler = Projector("gv")
    for event in reversed(events):  # out of order, one batch each
        async with isolated.engine.begin() as c:
            await handler.handle(c, [event])
    factory = SqlUnitOfWorkFactory(isolated.engine)
    async with factory() as uow:
        (view,) = await uow.order_views.of_user(user, None, 10)
    assert view.status == "CANCELLED"
    await rebuild(isolated.engine)  # no order in `orders`: the views are recomputed empty
    async with factory() as uow:
        assert await uow.order_views.of_user(user, None, 10) == []


async def test_a_running_worker_lingers_so_events_arriving_apart_share_one_transaction(
    isolated: Connections, bus: EventStreams
) -> None:
    relay = OutboxRelay(isolated.engine, bus, ["gl"])
    await bus.ensure_groups(["gl"])
    worker = make_worker(isolated, Projector("gl"), linger_ms=400)
    handled = "SELECT count(*) FROM inbox WHERE consumer = 'gl'"
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        first = confirmed_orders(1, "SKU-L")[:1]
        await append(isolated, first)
        await drain(relay)
        for _ in range(100):  # the first batch: one event, then the worker lingers
            if await scalar(isolated, handled) == 1:
                break
            await asyncio.sleep(0.01)
        later = confirmed_orders(3, "SKU-L")
        for event in later:  # committed and published one by one, while it lingers
            await append(isolated, [event])
            await drain(relay)
        for _ in range(300):
            if await scalar(isolated, handled) == 1 + len(later):
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await running
    async with isolated.engine.connect() as c:
        times = (
            await c.execute(
                text("SELECT handled_at FROM inbox WHERE consumer = 'gl' AND event_id = ANY(:ids)"),
                {"ids": [e.id for e in later]},
            )
        ).scalars()
        assert len(set(times)) == 1  # one transaction (now() is its start time)
