"""The notifier against the provider simulator: retries, the shared breaker, exactly one call."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from actors.events.errors import ProviderError
from actors.events.handlers import NotifierHandler
from actors.events.model import notifications
from actors.events.notifier import HttpNotificationProvider, NotifierPolicy
from storage.breaker import BreakerPolicy, CircuitOpenError, RedisCircuitBreaker
from storage.connections import Connections
from storage.relay import OutboxRelay
from storage.streams import EventStreams
from tests.integration.events_helpers import (
    PARTITIONS,
    append,
    drain,
    make_worker,
    order_event,
    reset_bus,
)
from tests.provider_sim import ProviderSim

POLICY = BreakerPolicy(
    window_s=30, min_calls=3, failure_rate=0.5, slow_call_s=0.3, open_s=0.4, half_open_probes=1
)


@pytest.fixture
def sim() -> Iterator[ProviderSim]:
    provider = ProviderSim().start()
    yield provider
    provider.stop()


def breaker(conn: Connections, name: str, policy: BreakerPolicy = POLICY) -> RedisCircuitBreaker:
    return RedisCircuitBreaker(conn.redis, name, policy)


async def test_failures_open_the_shared_breaker_and_a_probe_closes_it(
    isolated: Connections, sim: ProviderSim
) -> None:
    await reset_bus(isolated)
    name = f"b-{uuid.uuid4().hex[:6]}"
    one, other = breaker(isolated, name), breaker(isolated, name)
    policy = NotifierPolicy(sim.url, timeout_s=0.5, attempts=3, backoff_s=0.01)
    sim.set_mode("fail")
    async with httpx.AsyncClient() as http:
        provider = HttpNotificationProvider(http, one, policy)
        (note,) = notifications([order_event("OrderConfirmed", uuid.uuid4(), "CONFIRMED")])
        with pytest.raises(ProviderError):
            await provider.send(note)  # three tries, three failures: the breaker opens
        assert sim.state.attempts == 3
        assert await other.state() == "open"  # every replica sees it
        with pytest.raises(CircuitOpenError):
            await provider.send(note)
        assert sim.state.attempts == 3  # refused without calling
        await asyncio.sleep(0.45)
        assert await other.acquire()  # the one half-open probe
        assert not await one.acquire()  # probes are limited
        await other.record(False)
        assert await one.state() == "open"  # a failed probe opens it again
        await asyncio.sleep(0.45)
        sim.set_mode("recover")
        await provider.send(note)
        assert await other.state() == "closed"
    (record,) = sim.records().values()
    assert record["key"] == str(note.event_id)
    assert record["request_id"] == note.trace_id
    assert record["traceparent"].split("-")[1] == note.trace_id


async def test_stalls_and_slow_answers_count_as_failures(
    isolated: Connections, sim: ProviderSim
) -> None:
    name = f"b-{uuid.uuid4().hex[:6]}"
    slow = BreakerPolicy(window_s=30, min_calls=2, failure_rate=1.0, slow_call_s=0.1, open_s=5)
    shared = breaker(isolated, name, slow)
    policy = NotifierPolicy(sim.url, timeout_s=0.3, attempts=1, backoff_s=0.01)

    notes = notifications([order_event("OrderConfirmed", uuid.uuid4(), "CONFIRMED")] * 1)
    async with httpx.AsyncClient() as http:
        provider = HttpNotificationProvider(http, shared, policy)
        sim.set_mode("stall", stall_s=0.6)
        with pytest.raises(ProviderError):
            await provider.send(notes[0])  # timed out
        sim.set_mode("stall", stall_s=0.15)
        await provider.send(notes[0])  # answered, but slower than slow_call_s
    assert await shared.state() == "open"
    assert len(sim.records()) == 1  # the provider deduplicated the late first try


async def test_each_confirmed_order_is_notified_once_through_an_outage(
    isolated: Connections, sim: ProviderSim
) -> None:
    await reset_bus(isolated)
    bus = EventStreams(isolated.redis, PARTITIONS)
    events = [
        order_event(kind, o, status)
        for o in (uuid.uuid4() for _ in range(6))
        for kind, status in (("OrderPlaced", "PENDING"), ("OrderConfirmed", "CONFIRMED"))
    ]
    shared = breaker(isolated, f"b-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient() as http:
        policy = NotifierPolicy(sim.url, timeout_s=0.5, attempts=2, backoff_s=0.01)
        handler = NotifierHandler(HttpNotificationProvider(http, shared, policy), shared)
        handler.group = "gn"
        await bus.ensure_groups(["gn"])
        relay = OutboxRelay(isolated.engine, bus, ["gn"])
        worker = make_worker(isolated, handler, max_deliveries=50)
        sim.set_mode("fail")
        await append(isolated, events)
        await drain(relay)
        for _ in range(5):
            await worker.step()
        assert await shared.state() in {"open", "half_open"}
        assert not await handler.ready() or await shared.state() == "half_open"
        sim.set_mode("recover")
        for _ in range(300):
            await worker.step()
            await asyncio.sleep(0.01)
            if sum((await bus.lag(["gn"])).values()) == 0:
                break
        await drain(relay)  # and a redelivery of everything changes nothing
    confirmed = {str(e.id) for e in events if e.type == "OrderConfirmed"}
    assert set(sim.records()) == confirmed


async def test_a_batch_never_has_more_calls_in_flight_than_the_notifier_allows(
    isolated: Connections, sim: ProviderSim
) -> None:
    await reset_bus(isolated)
    sim.set_mode("stall", stall_s=0.05)  # every call takes a while: they would overlap
    policy = NotifierPolicy(sim.url, timeout_s=2, attempts=1, concurrency=3)
    relaxed = BreakerPolicy(slow_call_s=1.0)
    events = [order_event("OrderConfirmed", uuid.uuid4(), "CONFIRMED") for _ in range(20)]
    async with httpx.AsyncClient() as http:
        provider = HttpNotificationProvider(http, breaker(isolated, "inflight", relaxed), policy)
        await asyncio.gather(*(provider.send(n) for n in notifications(events)))
    assert len(sim.records()) == 20
    assert sim.state.most_in_flight == 3


def test_the_simulator_records_nothing_of_a_request_whose_body_never_came(
    sim: ProviderSim,
) -> None:
    host, port = sim.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:  # a caller killed mid-request
        conn.sendall(
            b"POST /notifications HTTP/1.1\r\nHost: sim\r\nIdempotency-Key: k1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 60\r\n\r\n"
        )
    deadline = time.monotonic() + 2
    while sim.state.attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # it may not even count as an attempt; give it the chance
    assert sim.records() == {}
