"""``/admin/dead-letters``: events consumer groups gave up on, listed and replayed.

No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Path
from fastapi.responses import JSONResponse

from actors.events.errors import UnknownDeadLetterError
from serve._auth import Principal, Require
from serve.schemas import (
    Cursor,
    DeadLetterOut,
    DeadLetterPage,
    Limit,
    decode_audit_cursor,
    keyset_page,
    parse_id,
)
from storage.ports import UnitOfWorkFactory

Operator = Annotated[Principal, Depends(Require("events:manage"))]
LetterIdPath = Annotated[str, Path(max_length=64, description="the dead letter's id")]


def event_routes(app: FastAPI, uow: UnitOfWorkFactory) -> None:
    """Add the dead-letter routes, reading and replaying through ``uow``."""

    @app.get("/admin/dead-letters", tags=["admin"])
    async def dead_letters(_: Operator, limit: Limit = 20, cursor: Cursor = None) -> DeadLetterPage:
        after = decode_audit_cursor(cursor)
        async with uow() as tx:
            found = await tx.dead_letters.list_page(after, limit + 1)
        page, next_cursor = keyset_page(found, limit, lambda d: (d.dead_at, d.id))
        return DeadLetterPage(items=[DeadLetterOut.of(d) for d in page], next_cursor=next_cursor)

    @app.post("/admin/dead-letters/{letter_id}/replay", tags=["admin"], status_code=202)
    async def replay(_: Operator, letter_id: LetterIdPath) -> JSONResponse:
        target = parse_id(letter_id, UnknownDeadLetterError)
        async with uow() as tx:
            letter = await tx.dead_letters.replay(target, datetime.now(UTC))
            await tx.commit()
        if letter is None:
            raise UnknownDeadLetterError(letter_id)
        body = DeadLetterOut.of(letter).model_dump(mode="json")
        return JSONResponse(body, status_code=202)
