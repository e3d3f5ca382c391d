"""Retention: what the event side and the sagas may forget, and when.

Kept: every event some consumer group has not recorded, the inbox row of every event still
in the outbox (or the sweep would publish it again), unfinished sagas and their logs, dead
letters not yet replayed, and every order. Dropped after ``retention_s``: recorded events,
inbox rows of dropped events, stream entries, finished (COMPLETED, FAILED) sagas with their
logs, replayed dead letters; after ``idempotency_retention_s``: stored request outcomes.
Deletes go in bounded batches so no statement holds many locks for long.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage._translate import translated
from storage.relay import UNRECORDED, Subscriptions, subscription_params
from storage.streams import EventStreams

_FINISHED = "('COMPLETED', 'FAILED')"
_CUTOFF = "now() - make_interval(secs => :keep)"
_DELETES = {
    "outbox": f"""
        DELETE FROM outbox WHERE seq IN (
          SELECT o.seq FROM outbox AS o
           WHERE o.published_at < {_CUTOFF} AND NOT {UNRECORDED}
           ORDER BY o.seq LIMIT :batch)""",  # noqa: S608 - constant fragments  # noqa: S608 - constant fragments
    "inbox": f"""
        DELETE FROM inbox WHERE (consumer, event_id) IN (
          SELECT i.consumer, i.event_id FROM inbox AS i
           WHERE i.handled_at < {_CUTOFF}
             AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.id = i.event_id)
           LIMIT :batch)""",  # noqa: S608 - constant fragments
    "saga_log": f"""
        DELETE FROM saga_log WHERE seq IN (
          SELECT l.seq FROM saga_log AS l JOIN sagas AS s ON s.id = l.saga_id
           WHERE s.status IN {_FINISHED} AND s.updated_at < {_CUTOFF} LIMIT :batch)""",  # noqa: S608 - constant fragments
    "sagas": f"""
        DELETE FROM sagas WHERE id IN (
          SELECT s.id FROM sagas AS s
           WHERE s.status IN {_FINISHED} AND s.updated_at < {_CUTOFF}
             AND NOT EXISTS (SELECT 1 FROM saga_log AS l WHERE l.saga_id = s.id)
           LIMIT :batch)""",  # noqa: S608 - constant fragments
    "dead_letters": f"""
        DELETE FROM dead_letters WHERE id IN (
          SELECT id FROM dead_letters WHERE replayed_at < {_CUTOFF} LIMIT :batch)""",  # noqa: S608 - constant fragments
    "operations": f"""
        DELETE FROM operations WHERE key IN (
          SELECT key FROM operations WHERE created_at < {_CUTOFF} LIMIT :batch)""",  # noqa: S608 - constant fragments
}


@dataclass(frozen=True, slots=True)
class Retention:
    """How long things are kept.

    Attributes:
        retention_s: events, inbox rows, stream entries, finished sagas, replayed letters.
        idempotency_retention_s: stored request outcomes (idempotency keys; at least 24 h).
        batch: most rows one delete statement removes.
        rounds: most statements per table in one run.
    """

    retention_s: float
    idempotency_retention_s: float
    batch: int = 5000
    rounds: int = 20


class RetentionJanitor:
    """Trims the outbox, inboxes, streams, finished sagas and idempotency keys."""

    def __init__(
        self,
        engine: AsyncEngine,
        streams: EventStreams,
        groups: Sequence[str] | Subscriptions,
        retention: Retention,
    ) -> None:
        self._engine = engine
        self._streams = streams
        self._subscriptions = subscription_params(groups)
        self._retention = retention

    async def run_once(self) -> dict[str, int]:
        """Delete what retention allows; returns the rows (and stream entries) removed."""
        removed = {table: await self._trim(table) for table in _DELETES}
        cutoff_ms = int((time.time() - self._retention.retention_s) * 1000)
        removed["streams"] = await self._streams.trim(max(cutoff_ms, 0))
        return removed

    async def _trim(self, table: str) -> int:
        keep = (
            self._retention.idempotency_retention_s
            if table == "operations"
            else self._retention.retention_s
        )
        params = {"keep": keep, "batch": self._retention.batch, **self._subscriptions}
        total = 0
        for _ in range(self._retention.rounds):
            async with translated(), self._engine.begin() as conn:
                count = (await conn.execute(text(_DELETES[table]), params)).rowcount
            total += count
            if count < self._retention.batch:
                break
        return total
