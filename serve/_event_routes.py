"""``/admin/dead-letters``: events consumer groups gave up on, listed and replayed.

No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from actors.events.errors import UnknownDeadLetterError
from serve._auth import Principal, Require
from serve.schemas import Cursor, Limit, decode_audit_cursor, encode_audit_cursor
from storage.ports import UnitOfWorkFactory
from storage.records import DeadLetterRecord

Operator = Annotated[Principal, Depends(Require("events:manage"))]
LetterIdPath = Annotated[str, Path(max_length=64, description="the dead letter's id")]


class DeadLetterOut(BaseModel):
    """One dead letter as operators see it."""

    id: UUID
    group: str
    event_id: UUID
    type: str
    aggregate_id: str
    trace_id: str
    error: str
    deliveries: int
    dead_at: datetime
    replayed_at: datetime | None

    @classmethod
    def of(cls, d: DeadLetterRecord) -> "DeadLetterOut":
        """The view of a record."""
        e = d.event
        return cls(
            id=d.id,
            group=d.consumer,
            event_id=e.id,
            type=e.type,
            aggregate_id=e.aggregate_id,
            trace_id=e.trace_id,
            error=d.error,
            deliveries=d.deliveries,
            dead_at=d.dead_at,
            replayed_at=d.replayed_at,
        )


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first."""

    items: list[DeadLetterOut]
    next_cursor: str | None


def _letter_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise UnknownDeadLetterError(raw) from None


def event_routes(app: FastAPI, uow: UnitOfWorkFactory) -> None:
    """Add the dead-letter routes, reading and replaying through ``uow``."""

    @app.get("/admin/dead-letters", tags=["admin"])
    async def dead_letters(_: Operator, limit: Limit = 20, cursor: Cursor = None) -> DeadLetterPage:
        after = decode_audit_cursor(cursor)
        async with uow() as tx:
            found = await tx.dead_letters.list_page(after, limit + 1)
        page, more = found[:limit], len(found) > limit
        next_cursor = encode_audit_cursor(page[-1].dead_at, page[-1].id) if more else None
        return DeadLetterPage(items=[DeadLetterOut.of(d) for d in page], next_cursor=next_cursor)

    @app.post("/admin/dead-letters/{letter_id}/replay", tags=["admin"], status_code=202)
    async def replay(_: Operator, letter_id: LetterIdPath) -> JSONResponse:
        target = _letter_id(letter_id)
        async with uow() as tx:
            letter = await tx.dead_letters.replay(target, datetime.now(UTC))
            await tx.commit()
        if letter is None:
            raise UnknownDeadLetterError(letter_id)
        body = DeadLetterOut.of(letter).model_dump(mode="json")
        return JSONResponse(body, status_code=202)
