"""PostgreSQL adapters of orders and sagas: the orders, saga state, and the saga log.

Orchestrators hand over whole batches of transitions, so writes are one statement for any
number of rows (arrays in, ``unnest`` on the server).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from storage._tables import orders, saga_log, sagas
from storage._translate import translated
from storage.records import OrderLine, OrderRecord, SagaLogRecord, SagaRecord

_ORDER = (
    orders.c.id,
    orders.c.user_id,
    orders.c.status,
    orders.c["items"],
    orders.c.total,
    orders.c.currency,
    orders.c.failure_reason,
    orders.c.trace_id,
    orders.c.created_at,
    orders.c.updated_at,
)
_SAGA = tuple(sagas.c[name] for name in SagaRecord.__slots__)
_LOG = tuple(saga_log.c[name] for name in SagaLogRecord.__slots__)

_ADD_ORDERS = text(
    """
    INSERT INTO orders (id, user_id, status, items, total, currency, failure_reason, trace_id,
                        created_at, updated_at)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:users AS uuid[]), CAST(:statuses AS text[]),
                         CAST(:items AS text[]), CAST(:totals AS bigint[]),
                         CAST(:currencies AS text[]), CAST(:reasons AS text[]),
                         CAST(:traces AS text[]), CAST(:created AS timestamptz[]),
                         CAST(:updated AS timestamptz[]))
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)
# An order's status only moves forward: a checkpoint written again (its first commit was not
# known to have gone through) must not take back a later change, such as a cancellation.
_RANK = "CASE {0} WHEN 'PENDING' THEN 0 WHEN 'CANCELLING' THEN 2 WHEN 'CANCELLED' THEN 3 ELSE 1 END"
_SAVE_ORDERS = text(
    f"""
    UPDATE orders AS o
       SET status = u.status, failure_reason = u.reason, updated_at = u.updated_at
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:reasons AS text[]),
                  CAST(:updated AS timestamptz[])) AS u(id, status, reason, updated_at)
     WHERE o.id = u.id AND {_RANK.format("o.status")} <= {_RANK.format("u.status")}
    """  # noqa: S608 - constant fragments
)
_ADD_SAGAS = text(
    """
    INSERT INTO sagas (id, kind, order_id, partition, status, steps, data, failure_reason,
                       error, trace_id, deadline, created_at, updated_at)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:kinds AS text[]), CAST(:orders AS uuid[]),
                         CAST(:partitions AS integer[]), CAST(:statuses AS text[]),
                         CAST(:steps AS text[]), CAST(:data AS text[]),
                         CAST(:reasons AS text[]), CAST(:errors AS text[]),
                         CAST(:traces AS text[]), CAST(:deadlines AS timestamptz[]),
                         CAST(:created AS timestamptz[]), CAST(:updated AS timestamptz[]))
    """
)
_SAVE_SAGAS = text(
    """
    UPDATE sagas AS s
       SET status = u.status, steps = u.steps, data = u.data, failure_reason = u.reason,
           error = u.error, updated_at = u.updated_at
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:steps AS text[]),
                  CAST(:data AS text[]), CAST(:reasons AS text[]), CAST(:errors AS text[]),
                  CAST(:updated AS timestamptz[]))
           AS u(id, status, steps, data, reason, error, updated_at)
     WHERE s.id = u.id
    """
)
_APPEND_LOG = text(
    """
    INSERT INTO saga_log (saga_id, step, transition, attempt, detail, trace_id, at)
    SELECT * FROM unnest(CAST(:sagas AS uuid[]), CAST(:steps AS text[]),
                         CAST(:transitions AS text[]), CAST(:attempts AS integer[]),
                         CAST(:details AS text[]), CAST(:traces AS text[]),
                         CAST(:at AS timestamptz[]))
    """
)
UNFINISHED = ("RUNNING", "COMPENSATING", "STUCK")


def items_json(items: Sequence[OrderLine]) -> str:
    """An order's lines as stored."""
    return json.dumps([{"sku": i.sku, "quantity": i.quantity, "price": i.price} for i in items])


def _order(row: Any) -> OrderRecord:
    values = list(row)
    values[3] = tuple(OrderLine(**line) for line in json.loads(values[3]))
    return OrderRecord(*values)


class SqlOrderRepository:
    """Orders in PostgreSQL, on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_many(self, rows: Sequence[OrderRecord]) -> set[UUID]:
        """Insert the orders whose id is new; return the ids inserted."""
        if not rows:
            return set()
        params = {
            "ids": [o.id for o in rows],
            "users": [o.user_id for o in rows],
            "statuses": [o.status for o in rows],
            "items": [items_json(o.items) for o in rows],
            "totals": [o.total for o in rows],
            "currencies": [o.currency for o in rows],
            "reasons": [o.failure_reason for o in rows],
            "traces": [o.trace_id for o in rows],
            "created": [o.created_at for o in rows],
            "updated": [o.updated_at for o in rows],
        }
        async with translated():
            return {r[0] for r in (await self._conn.execute(_ADD_ORDERS, params)).all()}

    async def get(self, order_id: UUID) -> OrderRecord | None:
        """Return the order, or ``None``."""
        found = await self.get_many([order_id])
        return found[0] if found else None

    async def get_many(self, order_ids: Sequence[UUID]) -> list[OrderRecord]:
        """Return the orders of ``order_ids`` that exist."""
        query = select(*_ORDER).where(orders.c.id.in_(list(order_ids)))
        async with translated():
            return [_order(r) for r in (await self._conn.execute(query)).all()]

    async def save_many(self, rows: Sequence[OrderRecord]) -> None:
        """Store the status, failure reason and ``updated_at`` of existing orders.

        A status never moves back (PENDING, then CONFIRMED or FAILED, then CANCELLING,
        then CANCELLED): an update that would is skipped.
        """
        if not rows:
            return
        params = {
            "ids": [o.id for o in rows],
            "statuses": [o.status for o in rows],
            "reasons": [o.failure_reason for o in rows],
            "updated": [o.updated_at for o in rows],
        }
        async with translated():
            await self._conn.execute(_SAVE_ORDERS, params)


class SqlSagaRepository:
    """Saga state and the saga log in PostgreSQL."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_many(self, rows: Sequence[SagaRecord]) -> None:
        """Insert new sagas.

        Raises:
            ConflictError: a saga with one of these ids exists.
        """
        if not rows:
            return
        params = {
            "ids": [s.id for s in rows],
            "kinds": [s.kind for s in rows],
            "orders": [s.order_id for s in rows],
            "partitions": [s.partition for s in rows],
            "statuses": [s.status for s in rows],
            "steps": [s.steps for s in rows],
            "data": [s.data for s in rows],
            "reasons": [s.failure_reason for s in rows],
            "errors": [s.error for s in rows],
            "traces": [s.trace_id for s in rows],
            "deadlines": [s.deadline for s in rows],
            "created": [s.created_at for s in rows],
            "updated": [s.updated_at for s in rows],
        }
        async with translated():
            await self._conn.execute(_ADD_SAGAS, params)

    async def save_many(self, rows: Sequence[SagaRecord]) -> None:
        """Store the state of existing sagas."""
        if not rows:
            return
        params = {
            "ids": [s.id for s in rows],
            "statuses": [s.status for s in rows],
            "steps": [s.steps for s in rows],
            "data": [s.data for s in rows],
            "reasons": [s.failure_reason for s in rows],
            "errors": [s.error for s in rows],
            "updated": [s.updated_at for s in rows],
        }
        async with translated():
            await self._conn.execute(_SAVE_SAGAS, params)

    async def append_log(self, entries: Sequence[SagaLogRecord]) -> None:
        """Append step transitions to the saga log."""
        if not entries:
            return
        params = {
            "sagas": [e.saga_id for e in entries],
            "steps": [e.step for e in entries],
            "transitions": [e.transition for e in entries],
            "attempts": [e.attempt for e in entries],
            "details": [e.detail for e in entries],
            "traces": [e.trace_id for e in entries],
            "at": [e.at for e in entries],
        }
        async with translated():
            await self._conn.execute(_APPEND_LOG, params)

    async def get(self, saga_id: UUID) -> SagaRecord | None:
        """Return the saga, or ``None``."""
        query = select(*_SAGA).where(sagas.c.id == saga_id)
        async with translated():
            row = (await self._conn.execute(query)).one_or_none()
        return SagaRecord(*row) if row is not None else None

    async def of_order(self, order_id: UUID) -> list[SagaRecord]:
        """Return the sagas that worked on ``order_id``, oldest first."""
        query = select(*_SAGA).where(sagas.c.order_id == order_id).order_by(sagas.c.created_at)
        async with translated():
            return [SagaRecord(*r) for r in (await self._conn.execute(query)).all()]

    async def unfinished(self, partitions: Sequence[int]) -> list[SagaRecord]:
        """Return the RUNNING, COMPENSATING and STUCK sagas of ``partitions``."""
        query = select(*_SAGA).where(
            sagas.c.status.in_(UNFINISHED), sagas.c.partition.in_(list(partitions))
        )
        async with translated():
            return [SagaRecord(*r) for r in (await self._conn.execute(query)).all()]

    async def log_of(self, saga_id: UUID) -> list[SagaLogRecord]:
        """Return the saga's step transitions, oldest first."""
        query = select(*_LOG).where(saga_log.c.saga_id == saga_id).order_by(saga_log.c.seq)
        async with translated():
            return [SagaLogRecord(*r) for r in (await self._conn.execute(query)).all()]

    async def list_page(
        self, status: str | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[SagaRecord]:
        """Return up to ``limit`` sagas, newest change first, continuing after ``after``."""
        query = select(*_SAGA).order_by(sagas.c.updated_at.desc(), sagas.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(sagas.c.status == status)
        if after is not None:
            query = query.where(tuple_(sagas.c.updated_at, sagas.c.id) < tuple_(*after))
        async with translated():
            return [SagaRecord(*r) for r in (await self._conn.execute(query)).all()]

    async def count_by_status(self) -> dict[str, int]:
        """How many sagas are in each status."""
        query = select(sagas.c.status, func.count()).group_by(sagas.c.status)
        async with translated():
            return {r[0]: int(r[1]) for r in (await self._conn.execute(query)).all()}
