"""The transactional outbox in PostgreSQL: events written with the change they describe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage._translate import translated
from storage.records import EventRecord

# Also carried as a CTE by the operation log's record (one statement for both).
APPEND_SQL = """
    INSERT INTO outbox (id, type, aggregate_id, trace_id, payload, created_at)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[]),
                         CAST(:aggregates AS text[]), CAST(:traces AS text[]),
                         CAST(:payloads AS text[]), CAST(:created AS timestamptz[]))
    ON CONFLICT (id) DO NOTHING
"""
_APPEND = text(APPEND_SQL)


def append_params(events: Sequence[EventRecord]) -> dict[str, list[Any]]:
    """The parameters of :data:`APPEND_SQL` for ``events``."""
    return {
        "ids": [e.id for e in events],
        "types": [e.type for e in events],
        "aggregates": [e.aggregate_id for e in events],
        "traces": [e.trace_id for e in events],
        "payloads": [e.payload for e in events],
        "created": [e.created_at for e in events],
    }


class SqlOutbox:
    """The outbox on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, events: Sequence[EventRecord]) -> None:
        """Add events to the outbox, in the caller's transaction; known ids are skipped.

        A writer that is not sure its commit went through writes the same events again.
        """
        if not events:
            return
        async with translated():
            await self._conn.execute(_APPEND, append_params(events))
