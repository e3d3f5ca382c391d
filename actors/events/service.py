"""Builds and runs the relay and the consumer groups from plain configuration.

:func:`run_relay` publishes the outbox and, periodically, sweeps for what Redis lost,
exports the backlog and lag, and applies retention. :func:`run_worker` runs one consumer
group. Both take a ``stop`` event and wait out storage trouble, so a process that runs them
keeps working across PostgreSQL and Redis restarts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

import httpx
import structlog

from actors.events.handlers import (
    CACHE,
    NOTIFIER,
    PROJECTOR,
    SUBSCRIPTIONS,
    CacheInvalidatorHandler,
    NotifierHandler,
    ProjectorHandler,
)
from actors.events.notifier import HttpNotificationProvider, NotifierPolicy
from actors.events.worker import EventWorker, Handler, WorkerPolicy
from storage.breaker import BreakerPolicy, RedisCircuitBreaker
from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig, Connections
from storage.errors import StorageError
from storage.janitor import Retention, RetentionJanitor
from storage.relay import OutboxRelay
from storage.streams import EventStreams
from storage.telemetry import EVENTS_PUBLISHED, EVENTS_REPUBLISHED, OUTBOX_BACKLOG, STREAM_LAG

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """Everything the event processes need, as plain picklable values.

    Attributes:
        connections: PostgreSQL and Redis.
        partitions: event stream partitions.
        relay_batch: events per relay transaction.
        linger_s: the relay's pause after a batch that was not full (an empty one too), so
            that the events committed meanwhile share its next transaction.
        sweep_interval_s: how often the relay sweeps for lost events and exports lag.
        republish_after_s: how old an unrecorded event must be before the sweep checks it.
        retention: what the janitor keeps.
        janitor_interval_s: how often retention runs.
        worker: how consumers read and when they give up.
        cache_policy: the product cache's policy (the invalidator's keys).
        notifier: the provider, or ``None`` (no notifier group).
        breaker: the provider's circuit breaker.
    """

    connections: ConnectionConfig
    partitions: int
    relay_batch: int
    linger_s: float
    sweep_interval_s: float
    republish_after_s: float
    retention: Retention
    janitor_interval_s: float
    worker: WorkerPolicy
    cache_policy: CachePolicy = field(default_factory=CachePolicy)
    notifier: NotifierPolicy | None = None
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    @property
    def groups(self) -> tuple[str, ...]:
        """The consumer groups events go to."""
        return (PROJECTOR, CACHE) + ((NOTIFIER,) if self.notifier else ())

    @property
    def subscriptions(self) -> dict[str, frozenset[str]]:
        """The event types each group records (the outbox keeps an event until they have)."""
        return {group: SUBSCRIPTIONS[group] for group in self.groups}


@dataclass
class RelayState:
    """What the relay did, for ``info`` (written by its loop only)."""

    published: int = 0
    republished: int = 0
    last_error: str | None = None
    trimmed: dict[str, int] = field(default_factory=dict)


class _Every:
    """True once per ``interval_s`` (first time: at once)."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True


async def run_relay(config: EventsConfig, stop: asyncio.Event, state: RelayState) -> None:
    """Publish, sweep, export and trim until ``stop`` is set."""
    conn = Connections(config.connections)
    streams = EventStreams(conn.redis, config.partitions)
    relay = OutboxRelay(conn.engine, streams, config.subscriptions, config.relay_batch)
    janitor = RetentionJanitor(conn.engine, streams, config.subscriptions, config.retention)
    sweep, trim, cursor = _Every(config.sweep_interval_s), _Every(config.janitor_interval_s), 0
    try:
        while not stop.is_set():
            try:
                published = await relay.publish_batch()
                state.published += published
                EVENTS_PUBLISHED.inc(published)
                if sweep.due():
                    cursor = await _sweep(relay, streams, config, cursor, state)
                if trim.due():
                    state.trimmed = await janitor.run_once()
                if published < config.relay_batch:  # no backlog: let the next batch fill up
                    await asyncio.sleep(config.linger_s)
            except (StorageError, OSError) as exc:
                state.last_error = repr(exc)
                log.warning("relay_step_failed", error=repr(exc))
                await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _sweep(
    relay: OutboxRelay, streams: EventStreams, config: EventsConfig, cursor: int, state: RelayState
) -> int:
    result = await relay.sweep(cursor, config.republish_after_s)
    state.republished += result.republished
    EVENTS_REPUBLISHED.inc(result.republished)
    if result.republished:
        log.warning("events_republished", count=result.republished)
    OUTBOX_BACKLOG.set(await relay.backlog())
    for group, lag in (await streams.lag(config.groups)).items():
        STREAM_LAG.labels(group).set(lag)
    return result.next_after


def consumer_name(group: str) -> str:
    """A consumer name unique to this process incarnation."""
    return f"{group}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _handler(
    group: str, config: EventsConfig, conn: Connections, http: httpx.AsyncClient
) -> Handler:
    if group == PROJECTOR:
        return ProjectorHandler()
    if group == CACHE:
        return CacheInvalidatorHandler(RedisProductCache(conn.redis, config.cache_policy))
    if group == NOTIFIER and config.notifier is not None:
        breaker = RedisCircuitBreaker(conn.redis, "notifier", config.breaker)
        provider = HttpNotificationProvider(http, breaker, config.notifier)
        return NotifierHandler(provider, breaker)
    raise ValueError(f"no consumer group {group!r} in this configuration")


async def run_worker(
    config: EventsConfig, group: str, stop: asyncio.Event, consumer: str | None = None
) -> None:
    """Run one consumer of ``group`` until ``stop`` is set."""
    conn = Connections(config.connections)
    async with httpx.AsyncClient() as http:
        handler = _handler(group, config, conn, http)
        streams = EventStreams(conn.redis, config.partitions)
        name = consumer or consumer_name(group)
        worker = EventWorker(conn.engine, streams, handler, name, config.worker)
        try:
            await worker.run(stop)
        finally:
            await conn.close()
