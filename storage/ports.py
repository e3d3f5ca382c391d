"""Ports: what the services need from storage, as protocols the adapters and fakes satisfy."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from storage.records import Page, ProductRecord


class ProductRepository(Protocol):
    """Products in the source of truth."""

    async def get(self, sku: str) -> ProductRecord | None:
        """Return the product, or ``None`` when no such SKU exists."""
        ...

    async def list_after(self, after: str | None, limit: int) -> Page[ProductRecord]:
        """Return up to ``limit`` products ordered by SKU, starting after ``after``."""
        ...

    async def in_partitions(self, partitions: Sequence[int]) -> list[ProductRecord]:
        """Return every product whose partition is one of ``partitions``."""
        ...

    async def add(self, product: ProductRecord) -> ProductRecord:
        """Insert a new product.

        Raises:
            ConflictError: the SKU exists already.
        """
        ...


class UnitOfWork(Protocol):
    """One transaction: changes made through its repositories commit together or not at all."""

    @property
    def products(self) -> ProductRepository:
        """The products of this transaction."""
        ...

    async def __aenter__(self) -> Self:
        """Begin the transaction."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed, and release the connection."""
        ...

    async def commit(self) -> None:
        """Make the transaction's changes durable."""
        ...


class UnitOfWorkFactory(Protocol):
    """Makes a fresh unit of work for each use case call."""

    def __call__(self) -> UnitOfWork:
        """Return a new, not yet entered unit of work."""
        ...


class ProductCache(Protocol):
    """The cache-aside copy of product reads (Redis), rebuilt from the source of truth."""

    async def invalidate(self, skus: Sequence[str]) -> None:
        """Drop the cached entries of ``skus`` and every cached listing."""
        ...
