"""Plain records exchanged between the domain and the storage adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProductRecord:
    """One product row: its catalogue data and its stock.

    Attributes:
        sku: the product's stock-keeping unit, its primary key.
        name: display name.
        price: unit price in minor units of ``currency``.
        currency: ISO 4217 code; one per deployment.
        available: units that can be reserved.
        reserved: units held by unfinished orders.
        partition: the ownership partition the SKU hashes to.
        version: incremented by every change of the row.
        updated_at: time of the last change.
    """

    sku: str
    name: str
    price: int
    currency: str
    available: int
    reserved: int
    partition: int
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing.

    Attributes:
        items: the records on this page.
        next_after: the key to continue after, or ``None`` on the last page.
    """

    items: tuple[T, ...]
    next_after: str | None
