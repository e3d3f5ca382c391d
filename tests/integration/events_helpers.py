"""Shared helpers of the event-side integration tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from actors.events.worker import EventWorker, Handler, WorkerPolicy
from storage.connections import Connections
from storage.products import SqlUnitOfWorkFactory
from storage.records import EventRecord
from storage.relay import OutboxRelay
from storage.streams import EventStreams

PARTITIONS = 4
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def order_event(
    kind: str,
    order_id: uuid.UUID,
    status: str,
    *,
    user_id: uuid.UUID | None = None,
    items: Sequence[tuple[str, int, int]] = (("SKU-A", 1, 100),),
    minute: int = 0,
) -> EventRecord:
    payload = {
        "order_id": str(order_id),
        "user_id": str(user_id or uuid.UUID(int=1)),
        "status": status,
        "items": [{"sku": s, "quantity": q, "price": p} for s, q, p in items],
        "total": sum(q * p for _, q, p in items),
        "currency": "USD",
        "failure_reason": None,
        "created_at": T0.isoformat(),
        "updated_at": (T0 + timedelta(minutes=minute)).isoformat(),
    }
    return EventRecord(uuid.uuid4(), kind, str(order_id), uuid.uuid4().hex, json.dumps(payload), T0)


def poison(order_id: uuid.UUID) -> EventRecord:
    return EventRecord(uuid.uuid4(), "OrderConfirmed", str(order_id), "t", "not json", T0)


async def append(conn: Connections, events: Sequence[EventRecord]) -> None:
    async with SqlUnitOfWorkFactory(conn.engine)() as uow:
        await uow.outbox.append(events)
        await uow.commit()


async def reset_bus(conn: Connections) -> None:
    """A clean event side: no outbox, inbox, dead letters, read models or streams."""
    async with conn.engine.begin() as c:
        await c.execute(text("TRUNCATE outbox, inbox, dead_letters, order_views, product_sales"))
    keys = [k async for k in conn.redis.scan_iter("shoal:events:*")]
    keys += [k async for k in conn.redis.scan_iter("shoal:breaker:*")]
    if keys:
        await conn.redis.delete(*keys)


async def drain(relay: OutboxRelay) -> int:
    total = 0
    while n := await relay.publish_batch():
        total += n
    return total


def make_worker(
    conn: Connections, handler: Handler, consumer: str = "c1", **policy: int
) -> EventWorker:
    defaults = {"block_ms": 20, "claim_idle_ms": 100, "max_deliveries": 3}
    p = WorkerPolicy(**(defaults | policy))  # type: ignore[arg-type]
    return EventWorker(conn.engine, EventStreams(conn.redis, PARTITIONS), handler, consumer, p)


async def scalar(conn: Connections, sql: str, **params: object) -> int:
    async with conn.engine.connect() as c:
        return int((await c.execute(text(sql), params)).scalar_one())
