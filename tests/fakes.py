"""In-memory fakes of the storage ports; they pass the same contract tests as the adapters."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from storage.errors import ConflictError
from storage.records import Page, ProductRecord


class FakeProductRepository:
    def __init__(self, rows: dict[str, ProductRecord]) -> None:
        self._rows = rows

    async def get(self, sku: str) -> ProductRecord | None:
        return self._rows.get(sku)

    async def list_after(self, after: str | None, limit: int) -> Page[ProductRecord]:
        keys = sorted(k for k in self._rows if after is None or k > after)
        items = tuple(self._rows[k] for k in keys[:limit])
        return Page(items, items[-1].sku if len(keys) > limit else None)

    async def in_partitions(self, partitions: Sequence[int]) -> list[ProductRecord]:
        wanted = set(partitions)
        return [r for r in self._rows.values() if r.partition in wanted]

    async def add(self, product: ProductRecord) -> ProductRecord:
        if product.sku in self._rows:
            raise ConflictError("UniqueViolation")
        row = dataclasses.replace(product, updated_at=datetime.now(UTC))
        self._rows[product.sku] = row
        return row


class FakeUnitOfWork:
    """Stages writes in a copy and publishes them on commit, like a transaction."""

    def __init__(self, committed: dict[str, ProductRecord]) -> None:
        self._committed = committed
        self._staged: dict[str, ProductRecord] = {}

    async def __aenter__(self) -> Self:
        self._staged = dict(self._committed)
        self.products = FakeProductRepository(self._staged)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._staged = {}

    async def commit(self) -> None:
        self._committed.clear()
        self._committed.update(self._staged)


class FakeUnitOfWorkFactory:
    def __init__(self) -> None:
        self.rows: dict[str, ProductRecord] = {}

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.rows)


class FakeProductCache:
    def __init__(self) -> None:
        self.invalidated: list[str] = []

    async def invalidate(self, skus: Sequence[str]) -> None:
        self.invalidated.extend(skus)
