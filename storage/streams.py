"""Redis Streams: the event bus the relay publishes to and the consumer groups read from.

Events are partitioned over ``shoal:events:{n}`` by a stable hash of their aggregate id, so
one aggregate's events stay in order in one stream. The same hash is written in SQL
(:data:`PARTITION_SQL`) for the relay, which claims outbox rows partition by partition.
Redis holds nothing that PostgreSQL cannot rebuild: a lost stream or group is recreated and
the outbox publishes what the groups have not recorded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from storage._translate import translated
from storage.errors import StorageError
from storage.records import EventRecord

STREAM_PREFIX = "shoal:events:"
DEAD_LETTER_STREAM = "shoal:dead-letters"
# md5's first 32 bits, modulo the partition count: the formula of partition_of, in SQL.
PARTITION_SQL = "(('x' || substr(md5(aggregate_id), 1, 8))::bit(32)::bigint % :partitions)"


def partition_of(aggregate_id: str, partitions: int) -> int:
    """The stream partition of an aggregate (stable across processes and restarts)."""
    digest = hashlib.md5(aggregate_id.encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % partitions


def stream_name(partition: int) -> str:
    """The Redis key of stream partition ``partition``."""
    return f"{STREAM_PREFIX}{partition}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to a consumer.

    Attributes:
        stream: the stream it came from.
        message_id: its entry id in that stream.
        event: the event, or ``None`` when the entry could not be read as one.
        deliveries: how often the group has delivered it (1 on the first delivery).
    """

    stream: str
    message_id: str
    event: EventRecord | None
    deliveries: int


def encode_event(event: EventRecord) -> dict[str, str]:
    """The stream fields of an event (the envelope; ``payload`` is JSON text)."""
    return {
        "id": str(event.id),
        "type": event.type,
        "aggregate_id": event.aggregate_id,
        "trace_id": event.trace_id,
        "created_at": event.created_at.isoformat(),
        "payload": event.payload,
        "seq": str(event.seq),
    }


def decode_event(fields: dict[Any, Any]) -> EventRecord | None:
    """The event of a stream entry, or ``None`` if the entry is not one."""
    text = {_str(k): _str(v) for k, v in fields.items()}
    try:
        return EventRecord(
            id=UUID(text["id"]),
            type=text["type"],
            aggregate_id=text["aggregate_id"],
            trace_id=text["trace_id"],
            payload=text["payload"],
            created_at=datetime.fromisoformat(text["created_at"]),
            seq=int(text.get("seq", "0")),
        )
    except (KeyError, ValueError):
        return None


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventStreams:
    """The partitioned event streams and their consumer groups.

    Every method raises a storage error (retryable when Redis is unreachable).
    """

    def __init__(self, client: aioredis.Redis, partitions: int) -> None:
        self._redis = client
        self.partitions = partitions
        self.names = [stream_name(p) for p in range(partitions)]

    async def publish(self, events: Sequence[EventRecord]) -> list[str]:
        """Append events to their partitions in one round trip; returns their entry ids."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                stream = stream_name(partition_of(event.aggregate_id, self.partitions))
                pipe.xadd(stream, encode_event(event))  # type: ignore[arg-type]
            return [_str(i) for i in await pipe.execute()]

    async def ensure_groups(self, groups: Sequence[str]) -> int:
        """Create missing streams and groups (reading from the start); returns how many."""
        created = 0
        async with translated():
            for stream in self.names:
                for group in groups:
                    created += await self._create_group(stream, group)
        return created

    async def _create_group(self, stream: str, group: str) -> int:
        try:
            await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return 0
        return 1

    async def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New entries for ``consumer`` (``XREADGROUP``), creating lost groups on the way."""
        streams: dict[Any, Any] = dict.fromkeys(self.names, ">")
        reply: Any = None
        async with translated():
            try:
                reply = await self._redis.xreadgroup(
                    group, consumer, streams, count=count, block=block_ms
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_groups([group])
        return [
            Delivery(_str(stream), _str(mid), decode_event(fields), 1)
            for stream, entries in reply or []
            for mid, fields in entries
        ]

    async def claim(
        self, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        """Take over entries pending longer than ``min_idle_ms`` (``XAUTOCLAIM``)."""
        claimed: list[tuple[str, str, EventRecord | None]] = []
        async with translated():
            for stream in self.names:
                try:
                    reply = await self._redis.xautoclaim(
                        stream, group, consumer, min_idle_ms, "0-0", count=count
                    )
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        continue
                    raise
                claimed += [(stream, _str(m), decode_event(f)) for m, f in reply[1] if f]
            counts = await self._delivery_counts(group, [(s, m) for s, m, _ in claimed])
        return [Delivery(s, m, e, n) for (s, m, e), n in zip(claimed, counts, strict=True)]

    async def _delivery_counts(self, group: str, entries: list[tuple[str, str]]) -> list[int]:
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, mid in entries:
                pipe.xpending_range(stream, group, min=mid, max=mid, count=1)
            replies = await pipe.execute()
        return [int(r[0]["times_delivered"]) if r else 1 for r in replies]

    async def ack(self, group: str, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge handled entries (``XACK``), one round trip."""
        if not deliveries:
            return
        by_stream: dict[str, list[str]] = {}
        for d in deliveries:
            by_stream.setdefault(d.stream, []).append(d.message_id)
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, group, *ids)
            await pipe.execute()

    async def missing(self, entries: Sequence[tuple[str, str | None]]) -> list[bool]:
        """For each ``(stream, entry id)``: is the entry gone (lost or trimmed)?"""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for stream, mid in entries:
                pipe.xrange(stream, mid or "-", mid or "+", count=1)
            replies = await pipe.execute()
        return [mid is None or not r for (_, mid), r in zip(entries, replies, strict=True)]

    async def lag(self, groups: Sequence[str]) -> dict[str, int]:
        """Entries each group has not acknowledged yet (undelivered plus pending)."""
        totals = dict.fromkeys(groups, 0)
        async with translated():
            for stream in self.names:
                for info in await self._groups_of(stream):
                    name = _str(info["name"])
                    if name in totals:
                        totals[name] += int(info.get("pending") or 0) + int(info.get("lag") or 0)
        return totals

    async def _groups_of(self, stream: str) -> list[dict[str, Any]]:
        try:
            found: list[dict[str, Any]] = await self._redis.xinfo_groups(stream)
        except ResponseError:  # no such stream
            return []
        return found

    async def trim(self, before_ms: int) -> int:
        """Drop entries older than ``before_ms`` (epoch ms) from every partition."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for stream in self.names:
                pipe.xtrim(stream, minid=f"{before_ms}-0", approximate=False)
            return sum(int(n) for n in await pipe.execute())

    async def notify_dead_letter(self, group: str, event_id: UUID, dead_letter_id: UUID) -> None:
        """Announce a dead letter on ``shoal:dead-letters`` (a notice; PostgreSQL keeps it)."""
        fields = {"group": group, "event_id": str(event_id), "dead_letter_id": str(dead_letter_id)}
        async with translated():
            await self._redis.xadd(DEAD_LETTER_STREAM, fields, maxlen=10_000)  # type: ignore[arg-type]

    async def ready(self, groups: Sequence[str]) -> None:
        """Raise unless every partition exists with every group (the ``bus`` readiness check).

        Raises:
            StorageError: Redis cannot answer, or a stream or group is missing.
        """
        for stream in self.names:
            async with translated():
                have = {_str(i["name"]) for i in await self._groups_of(stream)}
            if not set(groups) <= have:
                raise StorageError(f"{stream} lacks groups {sorted(set(groups) - have)}")
