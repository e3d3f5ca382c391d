"""The outbox relay: publish committed events to the streams, and publish again what was lost.

A batch is claimed, published and marked in one transaction. The relay first takes a
transaction-scoped advisory lock on each stream partition it can get, then claims the oldest
unpublished rows of those partitions (``FOR UPDATE SKIP LOCKED``): several relays can run at
once, yet one partition is published by one relay at a time, in outbox order, so one
aggregate's events reach its stream in order. If the commit fails after ``XADD`` the events
are published again; consumers deduplicate on the event id (their inbox).

The outbox keeps an event until every consumer group has recorded it. :meth:`sweep` looks at
events published a while ago that some group has not recorded; those whose stream entry is
gone (Redis lost it, or the stream was trimmed) are marked unpublished, and the relay
publishes them again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage._translate import translated
from storage.records import EventRecord
from storage.streams import PARTITION_SQL, EventStreams, partition_of, stream_name

_LOCK_SPACE = 0x5E4E7  # advisory lock namespace of the relay's partition locks
_LOCK_PARTITIONS = text(
    "SELECT p FROM generate_series(0, :partitions - 1) AS p"
    " WHERE pg_try_advisory_xact_lock(:space, p)"
)
_CLAIM = text(
    f"""
    SELECT id, type, aggregate_id, trace_id, payload, created_at, seq FROM outbox
     WHERE published_at IS NULL AND {PARTITION_SQL} = ANY(CAST(:mine AS bigint[]))
     ORDER BY seq LIMIT :limit
       FOR UPDATE SKIP LOCKED
    """  # noqa: S608 - constant fragments
)
_MARK = text(
    """
    UPDATE outbox AS o SET published_at = clock_timestamp(), stream_id = u.stream_id
      FROM unnest(CAST(:seqs AS bigint[]), CAST(:stream_ids AS text[])) AS u(seq, stream_id)
     WHERE o.seq = u.seq
    """
)
_BACKLOG = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
# Rows some group subscribed to their type has not recorded: the outbox keeps them, the
# sweep and janitor ask this. ``:types`` holds each group's types, comma-separated (``*``: all).
UNRECORDED = """
    EXISTS (SELECT 1 FROM unnest(CAST(:groups AS text[]), CAST(:types AS text[])) AS g(name, types)
             WHERE (g.types = '*' OR o.type = ANY(string_to_array(g.types, ',')))
               AND NOT EXISTS (SELECT 1 FROM inbox AS i
                                WHERE i.consumer = g.name AND i.event_id = o.id))
"""
EVERY_TYPE = "*"
Subscriptions = Mapping[str, Collection[str]]


def subscription_params(groups: Sequence[str] | Subscriptions) -> dict[str, list[str]]:
    """The ``:groups`` and ``:types`` of :data:`UNRECORDED`; a plain list takes every type."""
    if not isinstance(groups, Mapping):
        groups = {g: (EVERY_TYPE,) for g in groups}
    return {"groups": list(groups), "types": [",".join(sorted(t)) for t in groups.values()]}


_SWEEP = text(
    f"""
    SELECT o.seq, o.aggregate_id, o.stream_id FROM outbox AS o
     WHERE o.seq > :after AND o.published_at IS NOT NULL
       AND o.published_at < now() - make_interval(secs => :grace) AND {UNRECORDED}
     ORDER BY o.seq LIMIT :limit
    """  # noqa: S608 - constant fragments
)
_UNPUBLISH = text(
    "UPDATE outbox SET published_at = NULL, stream_id = NULL"
    " WHERE seq = ANY(CAST(:seqs AS bigint[])) AND published_at IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep step did.

    Attributes:
        checked: unrecorded events looked at.
        republished: those marked for publishing again (their stream entry was gone).
        next_after: the outbox position the next step continues after (``0``: from the start).
    """

    checked: int
    republished: int
    next_after: int


class OutboxRelay:
    """Moves outbox rows to the event streams.

    Args:
        engine: PostgreSQL.
        streams: the event streams.
        groups: the consumer groups, with the event types each subscribes to (a plain list:
            every type); an event is kept until each group subscribed to its type recorded it.
        batch: most rows published per transaction.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        streams: EventStreams,
        groups: Sequence[str] | Subscriptions,
        batch: int = 500,
    ) -> None:
        self._engine = engine
        self._streams = streams
        self._groups = list(groups)
        self._subscriptions = subscription_params(groups)
        self._batch = batch

    async def publish_batch(self) -> int:
        """Publish one batch of unpublished events; returns how many (0: nothing to do)."""
        async with translated(), self._engine.connect() as conn, conn.begin():
            mine = await self._lock_partitions(conn)
            if not mine:
                return 0
            params = {"mine": mine, "partitions": self._streams.partitions, "limit": self._batch}
            events = [EventRecord(*r) for r in (await conn.execute(_CLAIM, params)).all()]
            if not events:
                return 0
            stream_ids = await self._streams.publish(events)
            marks = {"seqs": [e.seq for e in events], "stream_ids": stream_ids}
            await conn.execute(_MARK, marks)
        return len(events)

    async def _lock_partitions(self, conn: AsyncConnection) -> list[int]:
        params = {"partitions": self._streams.partitions, "space": _LOCK_SPACE}
        return [int(r[0]) for r in (await conn.execute(_LOCK_PARTITIONS, params)).all()]

    async def backlog(self) -> int:
        """Events committed but not yet published."""
        async with translated(), self._engine.connect() as conn:
            return int((await conn.execute(_BACKLOG)).scalar_one())

    async def sweep(self, after: int, grace_s: float, limit: int = 500) -> SweepResult:
        """Mark unpublished the unrecorded events published ``grace_s`` ago whose entry is gone.

        Missing groups are created first (reading from the stream's start), so an event whose
        entry is still there reaches a recreated group without being published again.
        """
        await self._streams.ensure_groups(self._groups)
        params: dict[str, Any] = {
            "after": after,
            "grace": grace_s,
            "limit": limit,
            **self._subscriptions,
        }
        async with translated(), self._engine.connect() as conn:
            rows = (await conn.execute(_SWEEP, params)).all()
            lost = await self._lost(rows)
            if lost:
                await conn.execute(_UNPUBLISH, {"seqs": lost})
                await conn.commit()
        next_after = rows[-1][0] if len(rows) == limit else 0
        return SweepResult(len(rows), len(lost), next_after)

    async def _lost(self, rows: Sequence[Any]) -> list[int]:
        if not rows:
            return []
        partitions = self._streams.partitions
        entries = [(stream_name(partition_of(r[1], partitions)), r[2]) for r in rows]
        gone = await self._streams.missing(entries)
        return [r[0] for r, missing in zip(rows, gone, strict=True) if missing]
