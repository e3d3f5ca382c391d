"""The CQRS read side in PostgreSQL: order history per customer and sales per SKU.

The projector writes them from events (:class:`SqlProjection`, in the transaction that
records the events in its inbox); the gateway reads them (:class:`SqlOrderViewRepository`).
:func:`rebuild` recomputes both from the ``orders`` table, the source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage._tables import order_views, product_sales
from storage._translate import translated
from storage.records import STATUS_RANK, OrderViewRecord, ProductSalesRecord

# STATUS_RANK in SQL; newer status wins, so an older or repeated event never moves a view back.
_RANK_SQL = (
    "CASE {0} WHEN 'PENDING' THEN 0 WHEN 'CONFIRMED' THEN 1 WHEN 'FAILED' THEN 1"
    " WHEN 'CANCELLING' THEN 2 WHEN 'CANCELLED' THEN 3 ELSE 0 END"
)
_VIEW = tuple(order_views.c[name] for name in OrderViewRecord.__slots__)
_LOCK = text("LOCK TABLE order_views, product_sales IN ROW EXCLUSIVE MODE")
_UPSERT_VIEWS = text(
    """
    INSERT INTO order_views (id, user_id, status, rank, total, currency, created_at, updated_at)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:users AS uuid[]), CAST(:statuses AS text[]),
                         CAST(:ranks AS smallint[]), CAST(:totals AS bigint[]),
                         CAST(:currencies AS text[]), CAST(:created AS timestamptz[]),
                         CAST(:updated AS timestamptz[]))
    ON CONFLICT (id) DO UPDATE
       SET status = excluded.status, rank = excluded.rank, updated_at = excluded.updated_at
     WHERE (order_views.rank, order_views.updated_at) < (excluded.rank, excluded.updated_at)
    """
)
_ADD_SALES = text(
    """
    INSERT INTO product_sales (sku, units, revenue, updated_at)
    SELECT u.sku, u.units, u.revenue, now()
      FROM unnest(CAST(:skus AS text[]), CAST(:units AS bigint[]), CAST(:revenue AS bigint[]))
           AS u(sku, units, revenue)
    ON CONFLICT (sku) DO UPDATE
       SET units = product_sales.units + excluded.units,
           revenue = product_sales.revenue + excluded.revenue, updated_at = now()
    """
)
_REBUILD = (
    "LOCK TABLE order_views, product_sales IN EXCLUSIVE MODE",
    "DELETE FROM order_views",
    "DELETE FROM product_sales",
    f"""
    INSERT INTO order_views (id, user_id, status, rank, total, currency, created_at, updated_at)
    SELECT id, user_id, status, {_RANK_SQL.format("status")}, total, currency, created_at,
           updated_at FROM orders
    """,  # noqa: S608 - constant fragments
    # Sales count from confirmation until the cancellation completes.
    """
    INSERT INTO product_sales (sku, units, revenue)
    SELECT line->>'sku', sum((line->>'quantity')::bigint),
           sum((line->>'quantity')::bigint * (line->>'price')::bigint)
      FROM orders, jsonb_array_elements(items::jsonb) AS line
     WHERE status IN ('CONFIRMED', 'CANCELLING')
     GROUP BY line->>'sku'
    """,
    # Every committed event is already reflected in the orders just read: mark it handled.
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, id FROM outbox"
    " ON CONFLICT DO NOTHING",
)


class SqlProjection:
    """The projector's writes, on the connection that records its inbox."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock(self) -> None:
        """Wait for a running rebuild; taken before the inbox rows, so the two never deadlock."""
        async with translated():
            await self._conn.execute(_LOCK)

    async def upsert_views(self, views: Sequence[OrderViewRecord]) -> None:
        """Store each order's view unless the stored one has a newer status (one per order)."""
        if not views:
            return
        params = {
            "ids": [v.id for v in views],
            "users": [v.user_id for v in views],
            "statuses": [v.status for v in views],
            "ranks": [STATUS_RANK.get(v.status, 0) for v in views],
            "totals": [v.total for v in views],
            "currencies": [v.currency for v in views],
            "created": [v.created_at for v in views],
            "updated": [v.updated_at for v in views],
        }
        async with translated():
            await self._conn.execute(_UPSERT_VIEWS, params)

    async def add_sales(self, deltas: Mapping[str, tuple[int, int]]) -> None:
        """Add ``(units, revenue)`` (negative to subtract) to each SKU's sales."""
        if not deltas:
            return
        skus = sorted(deltas)  # one lock order for every writer
        params = {
            "skus": skus,
            "units": [deltas[s][0] for s in skus],
            "revenue": [deltas[s][1] for s in skus],
        }
        async with translated():
            await self._conn.execute(_ADD_SALES, params)


class SqlOrderViewRepository:
    """Reads of the read models, on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def of_user(
        self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[OrderViewRecord]:
        """Return up to ``limit`` of the user's orders, newest first, continuing after ``after``."""
        order = (order_views.c.created_at.desc(), order_views.c.id.desc())
        query = select(*_VIEW).where(order_views.c.user_id == user_id).order_by(*order)
        if after is not None:
            query = query.where(tuple_(order_views.c.created_at, order_views.c.id) < tuple_(*after))
        async with translated():
            rows = (await self._conn.execute(query.limit(limit))).all()
        return [OrderViewRecord(*r) for r in rows]

    async def sales(self, skus: Sequence[str] | None = None) -> list[ProductSalesRecord]:
        """Return units sold and revenue per SKU (of ``skus``, or every SKU), ordered by SKU."""
        columns = (product_sales.c.sku, product_sales.c.units, product_sales.c.revenue)
        query = select(*columns).order_by(product_sales.c.sku)
        if skus is not None:
            query = query.where(product_sales.c.sku.in_(list(skus)))
        async with translated():
            return [ProductSalesRecord(*r) for r in (await self._conn.execute(query)).all()]


async def rebuild(engine: AsyncEngine, consumer: str = "projector") -> None:
    """Recompute the read models from ``orders`` in one transaction.

    Runs in a repeatable-read snapshot taken after the read models are locked, so the
    projector waits meanwhile; events committed with the orders read are marked handled by
    ``consumer``, and later ones are projected on top as usual.
    """
    async with translated(), engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            for statement in _REBUILD:
                await conn.execute(text(statement), {"consumer": consumer})
