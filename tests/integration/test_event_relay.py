"""The outbox relay on real PostgreSQL and Redis: order, once-only, and what Redis loses."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from storage.connections import Connections
from storage.relay import OutboxRelay
from storage.streams import PARTITION_SQL, EventStreams, decode_event, partition_of, stream_name
from tests.integration.events_helpers import (
    PARTITIONS,
    append,
    drain,
    order_event,
    reset_bus,
    scalar,
)


@pytest.fixture
async def bus(isolated: Connections) -> EventStreams:
    await reset_bus(isolated)
    return EventStreams(isolated.redis, PARTITIONS)


async def stream_events(bus: EventStreams, aggregate: str) -> list[uuid.UUID]:
    entries = await bus._redis.xrange(stream_name(partition_of(aggregate, PARTITIONS)))
    events = [decode_event(fields) for _, fields in entries]
    return [e.id for e in events if e is not None and e.aggregate_id == aggregate]


async def test_partition_hash_is_the_same_in_sql_and_python(isolated: Connections) -> None:
    ids = [str(uuid.uuid4()) for _ in range(50)]
    async with isolated.engine.connect() as c:
        rows = await c.execute(
            text(f"SELECT {PARTITION_SQL} FROM unnest(CAST(:ids AS text[])) AS t(aggregate_id)"),
            {"ids": ids, "partitions": 7},
        )
        in_sql = [int(r[0]) for r in rows]
    assert in_sql == [partition_of(i, 7) for i in ids]


async def test_relay_publishes_each_aggregates_events_in_order_and_marks_them(
    isolated: Connections, bus: EventStreams
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    events = [
        order_event(kind, order, status, minute=i)
        for i, (kind, status) in enumerate(
            [("OrderPlaced", "PENDING"), ("OrderConfirmed", "CONFIRMED")]
        )
        for order in (a, b)
    ]
    await append(isolated, events)
    relay = OutboxRelay(isolated.engine, bus, ["projector"], batch=3)
    assert await drain(relay) == 4
    for order in (a, b):
        assert await stream_events(bus, str(order)) == [
            e.id for e in events if e.aggregate_id == str(order)
        ]
    unmarked = "SELECT count(*) FROM outbox WHERE published_at IS NULL OR stream_id IS NULL"
    assert await scalar(isolated, unmarked) == 0
    assert await relay.backlog() == 0


async def test_two_relays_publish_every_event_exactly_once(
    isolated: Connections, bus: EventStreams
) -> None:
    orders = [uuid.uuid4() for _ in range(40)]
    events = [order_event("OrderPlaced", o, "PENDING", minute=m) for o in orders for m in range(5)]
    await append(isolated, events)
    relays = [OutboxRelay(isolated.engine, bus, ["projector"], batch=7) for _ in range(2)]
    await asyncio.gather(*(drain(r) for r in relays), *(drain(r) for r in relays))
    await drain(relays[0])
    published: list[uuid.UUID] = []
    for order in orders:
        ids = await stream_events(bus, str(order))
        assert ids == [e.id for e in events if e.aggregate_id == str(order)]
        published += ids
    assert len(published) == len(set(published)) == len(events)


async def test_sweep_republishes_only_what_redis_lost(
    isolated: Connections, bus: EventStreams
) -> None:
    order = uuid.uuid4()
    events = [order_event("OrderPlaced", order, "PENDING")]
    await append(isolated, events)
    relay = OutboxRelay(isolated.engine, bus, ["projector"])
    await drain(relay)
    kept = await relay.sweep(0, grace_s=0)
    assert (kept.checked, kept.republished) == (1, 0)  # unrecorded, but still in its stream
    await isolated.redis.flushdb()  # this test's Redis database only
    lost = await relay.sweep(0, grace_s=0)
    assert lost.republished == 1
    assert await drain(relay) == 1
    assert await stream_events(bus, str(order)) == [events[0].id]
    groups = await bus._redis.xinfo_groups(stream_name(partition_of(str(order), PARTITIONS)))
    assert [g["name"] for g in groups] == [b"projector"]
