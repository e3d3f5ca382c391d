"""A small worker runtime for one consumer group on the event streams.

Each step reads a batch (``XREADGROUP``), or first takes over entries left pending too long
by any consumer, a dead one included (``XAUTOCLAIM``). The batch is handled in one
PostgreSQL transaction that also records each event in the group's inbox; only events the
inbox did not know get the effect, so a redelivered event has none. Then the entries are
acknowledged. When a batch fails, its events are handled one by one; an event that fails
stays pending and comes back after ``claim_idle_ms``, and after ``max_deliveries`` it is a
dead letter (kept in PostgreSQL, recorded in the inbox, acknowledged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from actors.events.model import gives_up, type_label
from storage._translate import translated
from storage.breaker import CircuitOpenError
from storage.errors import StorageError
from storage.inbox import bury, record_handled
from storage.records import EventRecord
from storage.streams import Delivery, EventStreams
from storage.telemetry import DEAD_LETTERS, EVENTS_HANDLED

log = structlog.get_logger(__name__)


class Handler(Protocol):
    """What one consumer group does with events.

    ``subscribes`` names the event types it handles (``None``: all). The others are
    acknowledged at once, with no transaction and no inbox row.
    """

    group: str
    subscribes: frozenset[str] | None

    async def ready(self) -> bool:
        """Whether to consume now (the notifier pauses while its breaker is open)."""
        ...

    async def begin(self, conn: AsyncConnection) -> None:
        """Prepare the transaction, before the inbox rows are written."""
        ...

    async def handle(self, conn: AsyncConnection, events: Sequence[EventRecord]) -> None:
        """Apply the events not handled before; an effect outside PostgreSQL is idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """How a worker reads and when it gives up.

    Attributes:
        count: entries per read.
        block_ms: how long a read waits for new entries.
        claim_idle_ms: pending this long, an entry is taken over (by this or another consumer).
        max_deliveries: failed deliveries before an event is a dead letter.
        pause_s: how long to wait while the handler is not ready.
        linger_ms: how long to wait after a batch that was not full, so that the entries
            arriving meanwhile share the next batch (and its one transaction).
    """

    count: int = 100
    block_ms: int = 500
    claim_idle_ms: int = 5000
    max_deliveries: int = 5
    pause_s: float = 0.5
    linger_ms: int = 0


class EventWorker:
    """One consumer of one group: read, handle with the inbox, acknowledge."""

    def __init__(
        self,
        engine: AsyncEngine,
        streams: EventStreams,
        handler: Handler,
        consumer: str,
        policy: WorkerPolicy,
    ) -> None:
        self._engine = engine
        self._streams = streams
        self._handler = handler
        self.group = handler.group
        self.consumer = consumer
        self._policy = policy
        self._next_claim = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; storage trouble is waited out."""
        p = self._policy
        while not stop.is_set():
            try:
                if await self.step() < p.count and p.linger_ms:
                    await asyncio.sleep(p.linger_ms / 1000)  # let the next batch fill up
            except (StorageError, OSError) as exc:
                log.warning("worker_step_failed", group=self.group, error=repr(exc))
                await asyncio.sleep(p.pause_s)

    async def step(self) -> int:
        """Handle one batch; returns how many entries it took."""
        if not await self._handler.ready():
            await asyncio.sleep(self._policy.pause_s)
            return 0
        batch = await self._claim_due()
        if not batch:
            p = self._policy
            batch = await self._streams.read(self.group, self.consumer, p.count, p.block_ms)
        await self.process(batch)
        return len(batch)

    async def _claim_due(self) -> list[Delivery]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self._policy.claim_idle_ms / 2000
        p = self._policy
        return await self._streams.claim(self.group, self.consumer, p.claim_idle_ms, p.count)

    async def process(self, batch: Sequence[Delivery]) -> None:
        """Handle and acknowledge a batch; failed events stay pending or become dead letters."""
        junk = [d for d in batch if d.event is None]
        if junk:
            log.error("unreadable_entries", group=self.group, count=len(junk))
            EVENTS_HANDLED.labels(self.group, "other", "unreadable").inc(len(junk))
            await self._streams.ack(self.group, junk)
        good = [d for d in batch if d.event is not None]
        wanted = self._handler.subscribes
        if wanted is not None:
            others = [d for d in good if d.event is not None and d.event.type not in wanted]
            if others:
                await self._streams.ack(self.group, others)
            good = [d for d in good if d.event is not None and d.event.type in wanted]
        if not good:
            return
        try:
            await self._handle(good)
        except CircuitOpenError:
            return  # nothing acknowledged: handled again once the provider is back
        except Exception as exc:
            if _infrastructure(exc):
                raise  # says nothing about the events: wait, and do not count it against them
            log.warning("batch_failed", group=self.group, size=len(good), error=repr(exc))
            for delivery in good:
                if not await self._one(delivery):
                    return
            return
        await self._streams.ack(self.group, good)

    async def _one(self, delivery: Delivery) -> bool:
        """Handle one delivery alone; ``False`` when the worker should stop this batch."""
        try:
            await self._handle([delivery])
        except CircuitOpenError:
            return False
        except Exception as exc:
            if _infrastructure(exc):
                raise
            await self._failed(delivery, exc)
            return True
        await self._streams.ack(self.group, [delivery])
        return True

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        event = delivery.event
        assert event is not None
        label = type_label(event.type)
        if not gives_up(delivery.deliveries, self._policy.max_deliveries, False):
            EVENTS_HANDLED.labels(self.group, label, "failed").inc()
            log.warning(
                "event_failed", group=self.group, event_id=str(event.id),
                deliveries=delivery.deliveries, error=repr(exc), trace_id=event.trace_id,
            )  # fmt: skip
            return
        async with translated(), self._engine.begin() as conn:
            letter = await bury(conn, self.group, event, repr(exc), delivery.deliveries)
        if letter is not None:
            DEAD_LETTERS.labels(self.group).inc()
            EVENTS_HANDLED.labels(self.group, label, "dead").inc()
            log.error("dead_letter", group=self.group, event_id=str(event.id),
                      dead_letter_id=str(letter), trace_id=event.trace_id)  # fmt: skip
            await self._streams.notify_dead_letter(self.group, event.id, letter)
        await self._streams.ack(self.group, [delivery])

    async def _handle(self, deliveries: Sequence[Delivery]) -> None:
        events = [d.event for d in deliveries if d.event is not None]
        async with translated(), self._engine.begin() as conn:
            await self._handler.begin(conn)
            new = await record_handled(conn, self.group, [e.id for e in events])
            fresh = _first_of_each([e for e in events if e.id in new])
            await self._handler.handle(conn, fresh)
        for event in events:
            outcome = "handled" if event in fresh else "duplicate"
            EVENTS_HANDLED.labels(self.group, type_label(event.type), outcome).inc()


def _first_of_each(events: Sequence[EventRecord]) -> list[EventRecord]:
    seen: set[object] = set()
    unique = []
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            unique.append(event)
    return unique


def _infrastructure(exc: Exception) -> bool:
    """PostgreSQL or Redis trouble: retryable, and not the event's fault."""
    return isinstance(exc, StorageError) and exc.retryable
