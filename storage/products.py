"""PostgreSQL adapters: the product repository and the unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage._tables import products
from storage._translate import translated
from storage.auth import (
    SqlAuditLog,
    SqlRefreshTokenRepository,
    SqlSessionRepository,
    SqlSigningKeyRepository,
    SqlUserRepository,
)
from storage.errors import StaleWriteError
from storage.inbox import SqlDeadLetterRepository
from storage.orders import SqlOrderRepository, SqlSagaRepository
from storage.outbox import SqlOutbox
from storage.payments import SqlLedgerRepository, SqlOperationLog, SqlWalletRepository
from storage.read_models import SqlOrderViewRepository
from storage.records import Page, ProductRecord

_COLUMNS = (
    products.c.sku,
    products.c.name,
    products.c.price,
    products.c.currency,
    products.c.available,
    products.c.reserved,
    products.c.partition,
    products.c.version,
    products.c.updated_at,
)


def _record(row: Any) -> ProductRecord:
    return ProductRecord(*row)


# One statement for any number of rows: arrays in, one compare-and-set per row.
_UPDATE_MANY = text(
    """
    UPDATE products AS p
       SET name = u.name, price = u.price, available = u.available,
           reserved = u.reserved, version = u.version, updated_at = u.updated_at
      FROM unnest(CAST(:skus AS text[]), CAST(:names AS text[]), CAST(:prices AS bigint[]),
                  CAST(:available AS bigint[]), CAST(:reserved AS bigint[]),
                  CAST(:versions AS bigint[]), CAST(:updated AS timestamptz[]))
           AS u(sku, name, price, available, reserved, version, updated_at)
     WHERE p.sku = u.sku AND p.version = u.version - 1
    RETURNING p.sku, p.name, p.price, p.currency, p.available, p.reserved, p.partition,
              p.version, p.updated_at
    """
)


class SqlProductRepository:
    """Products in PostgreSQL, read and written on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, sku: str) -> ProductRecord | None:
        """Return the product, or ``None`` when no such SKU exists."""
        async with translated():
            row = (await self._conn.execute(select(*_COLUMNS).where(products.c.sku == sku))).first()
        return None if row is None else _record(row)

    async def list_after(self, after: str | None, limit: int) -> Page[ProductRecord]:
        """Return up to ``limit`` products ordered by SKU, starting after ``after``."""
        query = select(*_COLUMNS).order_by(products.c.sku).limit(limit + 1)
        if after is not None:
            query = query.where(products.c.sku > after)
        async with translated():
            rows = (await self._conn.execute(query)).all()
        items = tuple(_record(r) for r in rows[:limit])
        return Page(items, items[-1].sku if len(rows) > limit else None)

    async def in_partitions(self, partitions: Sequence[int]) -> list[ProductRecord]:
        """Return every product whose partition is one of ``partitions``."""
        query = select(*_COLUMNS).where(products.c.partition.in_(list(partitions)))
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return [_record(r) for r in rows]

    async def get_many(self, skus: Sequence[str]) -> list[ProductRecord]:
        """Return the products of ``skus`` that exist, in no particular order."""
        query = select(*_COLUMNS).where(products.c.sku.in_(list(skus)))
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return [_record(r) for r in rows]

    async def update_many(self, rows: Sequence[ProductRecord]) -> list[ProductRecord]:
        """Store each row's fields if the stored version is one less than the row's.

        Raises:
            StaleWriteError: some stored row has another version (another writer got there).
        """
        params = {
            "skus": [r.sku for r in rows],
            "names": [r.name for r in rows],
            "prices": [r.price for r in rows],
            "available": [r.available for r in rows],
            "reserved": [r.reserved for r in rows],
            "versions": [r.version for r in rows],
            "updated": [r.updated_at for r in rows],
        }
        async with translated():
            stored = (await self._conn.execute(_UPDATE_MANY, params)).all()
        if len(stored) != len(rows):
            raise StaleWriteError("products changed by another writer")
        return [_record(r) for r in stored]

    async def add(self, product: ProductRecord) -> ProductRecord:
        """Insert a new product.

        Raises:
            ConflictError: the SKU exists already.
        """
        values = {
            "sku": product.sku,
            "name": product.name,
            "price": product.price,
            "currency": product.currency,
            "available": product.available,
            "reserved": product.reserved,
            "partition": product.partition,
            "version": product.version,
            "updated_at": product.updated_at,
        }
        async with translated():
            row = (
                await self._conn.execute(insert(products).values(values).returning(*_COLUMNS))
            ).one()
        return _record(row)


class SqlUnitOfWork:
    """One PostgreSQL transaction with the repositories bound to it."""

    products: SqlProductRepository
    wallets: SqlWalletRepository
    ledger: SqlLedgerRepository
    operations: SqlOperationLog
    users: SqlUserRepository
    sessions: SqlSessionRepository
    refresh_tokens: SqlRefreshTokenRepository
    signing_keys: SqlSigningKeyRepository
    audit: SqlAuditLog
    orders: SqlOrderRepository
    sagas: SqlSagaRepository
    outbox: SqlOutbox
    order_views: SqlOrderViewRepository
    dead_letters: SqlDeadLetterRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        async with translated():
            self._conn = await self._engine.connect()
            await self._conn.begin()
        self.products = SqlProductRepository(self._conn)
        self.wallets = SqlWalletRepository(self._conn)
        self.ledger = SqlLedgerRepository(self._conn)
        self.operations = SqlOperationLog(self._conn)
        self.users = SqlUserRepository(self._conn)
        self.sessions = SqlSessionRepository(self._conn)
        self.refresh_tokens = SqlRefreshTokenRepository(self._conn)
        self.signing_keys = SqlSigningKeyRepository(self._conn)
        self.audit = SqlAuditLog(self._conn)
        self.orders = SqlOrderRepository(self._conn)
        self.sagas = SqlSagaRepository(self._conn)
        self.outbox = SqlOutbox(self._conn)
        self.order_views = SqlOrderViewRepository(self._conn)
        self.dead_letters = SqlDeadLetterRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                await conn.rollback()
        except Exception:  # noqa: S110 - the connection is discarded below either way
            pass
        finally:
            await conn.close()

    async def commit(self) -> None:
        """Make the transaction's changes durable."""
        assert self._conn is not None, "commit outside the unit of work"
        async with translated():
            await self._conn.commit()


class SqlUnitOfWorkFactory:
    """Makes a :class:`SqlUnitOfWork` per use case call on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __call__(self) -> SqlUnitOfWork:
        """Return a new, not yet entered unit of work."""
        return SqlUnitOfWork(self._engine)
