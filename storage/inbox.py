"""Consumer inboxes and dead letters in PostgreSQL.

A consumer group records each event it handles in ``inbox`` in the transaction of the
handling's effect: ``INSERT ... ON CONFLICT DO NOTHING`` says which events are new, so an
event delivered again has no second effect. An event a group gives up on is recorded too
(so the outbox may drop it) and kept in ``dead_letters`` until an operator replays it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from storage._tables import dead_letters
from storage._translate import translated
from storage.records import DeadLetterRecord, EventRecord

_RECORD = text(
    """
    INSERT INTO inbox (consumer, event_id)
    SELECT :consumer, unnest(CAST(:ids AS uuid[]))
    ON CONFLICT DO NOTHING
    RETURNING event_id
    """
)
_BURY = text(
    """
    INSERT INTO dead_letters (id, consumer, event_id, type, aggregate_id, trace_id, payload,
                              event_created_at, error, deliveries)
    VALUES (:id, :consumer, :event_id, :type, :aggregate_id, :trace_id, :payload,
            :event_created_at, :error, :deliveries)
    """
)
_MARK_REPLAYED = text(
    "UPDATE dead_letters SET replayed_at = :at WHERE id = :id AND replayed_at IS NULL RETURNING id"
)
_FORGET = text("DELETE FROM inbox WHERE consumer = :consumer AND event_id = :event_id")
# Back into the outbox, unpublished: the relay publishes it and the group handles it again.
_REQUEUE = text(
    """
    INSERT INTO outbox (id, type, aggregate_id, trace_id, payload, created_at)
    VALUES (:event_id, :type, :aggregate_id, :trace_id, :payload, :event_created_at)
    ON CONFLICT (id) DO UPDATE SET published_at = NULL, stream_id = NULL
    """
)
_COLUMNS = (
    dead_letters.c.id,
    dead_letters.c.consumer,
    dead_letters.c.event_id,
    dead_letters.c.type,
    dead_letters.c.aggregate_id,
    dead_letters.c.trace_id,
    dead_letters.c.payload,
    dead_letters.c.event_created_at,
    dead_letters.c.error,
    dead_letters.c.deliveries,
    dead_letters.c.dead_at,
    dead_letters.c.replayed_at,
)


async def record_handled(conn: AsyncConnection, consumer: str, ids: Sequence[UUID]) -> set[UUID]:
    """Record events as handled by ``consumer``; returns the ids not recorded before."""
    if not ids:
        return set()
    params = {"consumer": consumer, "ids": list(ids)}
    async with translated():
        return {r[0] for r in (await conn.execute(_RECORD, params)).all()}


async def bury(
    conn: AsyncConnection, consumer: str, event: EventRecord, error: str, deliveries: int
) -> UUID | None:
    """Give up on an event: record it handled and keep it as a dead letter.

    Returns:
        The dead letter's id, or ``None`` when the group had recorded the event already.
    """
    if not await record_handled(conn, consumer, [event.id]):
        return None
    letter = uuid4()
    params = {
        "id": letter,
        "consumer": consumer,
        "event_id": event.id,
        "type": event.type,
        "aggregate_id": event.aggregate_id,
        "trace_id": event.trace_id,
        "payload": event.payload,
        "event_created_at": event.created_at,
        "error": error[:2000],
        "deliveries": deliveries,
    }
    async with translated():
        await conn.execute(_BURY, params)
    return letter


def _letter(row: Any) -> DeadLetterRecord:
    event = EventRecord(row[2], row[3], row[4], row[5], row[6], row[7])
    return DeadLetterRecord(row[0], row[1], event, row[8], row[9], row[10], row[11])


class SqlDeadLetterRepository:
    """Dead letters on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def list_page(
        self, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[DeadLetterRecord]:
        """Return up to ``limit`` dead letters, newest first, continuing after ``after``."""
        order = (dead_letters.c.dead_at.desc(), dead_letters.c.id.desc())
        query = select(*_COLUMNS).order_by(*order).limit(limit)
        if after is not None:
            query = query.where(tuple_(dead_letters.c.dead_at, dead_letters.c.id) < tuple_(*after))
        async with translated():
            return [_letter(r) for r in (await self._conn.execute(query)).all()]

    async def get(self, dead_letter_id: UUID) -> DeadLetterRecord | None:
        """Return the dead letter, or ``None``."""
        query = select(*_COLUMNS).where(dead_letters.c.id == dead_letter_id)
        async with translated():
            row = (await self._conn.execute(query)).one_or_none()
        return None if row is None else _letter(row)

    async def replay(self, dead_letter_id: UUID, at: datetime) -> DeadLetterRecord | None:
        """Hand the event to its group again; a second replay changes nothing."""
        async with translated():
            marked = (
                await self._conn.execute(_MARK_REPLAYED, {"id": dead_letter_id, "at": at})
            ).first()
        letter = await self.get(dead_letter_id)
        if marked is None or letter is None:
            return letter
        event = letter.event
        params = {
            "consumer": letter.consumer,
            "event_id": event.id,
            "type": event.type,
            "aggregate_id": event.aggregate_id,
            "trace_id": event.trace_id,
            "payload": event.payload,
            "event_created_at": event.created_at,
        }
        async with translated():
            await self._conn.execute(_FORGET, params)
            await self._conn.execute(_REQUEUE, params)
        return letter

    async def count_open(self) -> int:
        """Dead letters not replayed."""
        query = text("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
        async with translated():
            return int((await self._conn.execute(query)).scalar_one())
