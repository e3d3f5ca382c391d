"""Inventory's pure rules: SKUs, new products, and which shard owns which partition."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from actors._ops import MAX_AMOUNT, MAX_QUANTITY, Operation
from actors.inventory.errors import (
    InvalidProductError,
    NotReservedError,
    OutOfStockError,
    StockLimitError,
)
from storage.records import ProductRecord

SKU_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_NAME = 200
MAX_STOCK = 10**12  # the most units of one product kept (available + reserved)


def check_sku(sku: str) -> str:
    """Return ``sku`` when it is a valid SKU.

    Raises:
        InvalidProductError: it is not.
    """
    if not SKU_PATTERN.fullmatch(sku):
        raise InvalidProductError("sku", "must match [A-Za-z0-9._-]{1,64}")
    return sku


@dataclass(frozen=True, slots=True)
class NewProduct:
    """The command to add a product to the catalogue, checked on construction."""

    sku: str
    name: str
    price: int
    currency: str
    initial_stock: int

    def __post_init__(self) -> None:
        check_sku(self.sku)
        check_name(self.name)
        check_price(self.price)
        if type(self.initial_stock) is not int or not 0 <= self.initial_stock <= MAX_QUANTITY:
            raise InvalidProductError("initial_stock", f"must be an integer 0..{MAX_QUANTITY}")


def check_quantity(quantity: int, field: str = "quantity") -> int:
    """Return ``quantity`` when it is a whole number 1..MAX_QUANTITY.

    Raises:
        InvalidProductError: it is not.
    """
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidProductError(field, f"must be an integer 1..{MAX_QUANTITY}")
    return quantity


def check_name(name: str) -> str:
    """Return ``name`` without surrounding blanks when it is 1..MAX_NAME characters.

    Raises:
        InvalidProductError: it is not.
    """
    if not 1 <= len(name.strip()) <= MAX_NAME:
        raise InvalidProductError("name", f"must be 1..{MAX_NAME} characters")
    return name.strip()


def check_price(price: int) -> int:
    """Return ``price`` when it is a whole amount 1..MAX_AMOUNT.

    Raises:
        InvalidProductError: it is not.
    """
    if type(price) is not int or not 1 <= price <= MAX_AMOUNT:
        raise InvalidProductError("price", f"must be an integer 1..{MAX_AMOUNT}")
    return price


@dataclass(frozen=True, slots=True)
class CreateProduct:
    """Add ``product`` to the catalogue."""

    op: Operation
    product: NewProduct

    @property
    def sku(self) -> str:
        """The SKU the command is about."""
        return self.product.sku


@dataclass(frozen=True, slots=True)
class UpdateProduct:
    """Change a product's name or price (stock is changed only by stock commands)."""

    op: Operation
    sku: str
    name: str | None = None
    price: int | None = None

    def __post_init__(self) -> None:
        check_sku(self.sku)
        if self.name is not None:
            object.__setattr__(self, "name", check_name(self.name))
        if self.price is not None:
            check_price(self.price)


@dataclass(frozen=True, slots=True)
class StockCommand:
    """Move ``quantity`` units of ``sku``; ``kind`` says how (see :data:`STOCK_KINDS`).

    ``undoes`` names the operation a compensation undoes (a release undoes a reservation):
    it applies only if that one did, and fences it if it never arrived.
    """

    op: Operation
    sku: str
    kind: str
    quantity: int
    undoes: str | None = None

    def __post_init__(self) -> None:
        check_sku(self.sku)
        check_quantity(self.quantity)
        if self.kind not in STOCK_KINDS:
            raise InvalidProductError("kind", f"must be one of {sorted(STOCK_KINDS)}")


def restock(row: ProductRecord, quantity: int) -> ProductRecord:
    """More units available."""
    if row.available + row.reserved + quantity > MAX_STOCK:
        raise StockLimitError(row.sku, MAX_STOCK)
    return replace(row, available=row.available + quantity)


def reserve(row: ProductRecord, quantity: int) -> ProductRecord:
    """Hold units for an order: from available to reserved.

    Raises:
        OutOfStockError: fewer than ``quantity`` are available.
    """
    if row.available < quantity:
        raise OutOfStockError(row.sku, row.available, quantity)
    return replace(row, available=row.available - quantity, reserved=row.reserved + quantity)


def release(row: ProductRecord, quantity: int) -> ProductRecord:
    """Give held units back: from reserved to available."""
    if row.reserved < quantity:
        raise NotReservedError(row.sku, row.reserved, quantity)
    return replace(row, available=row.available + quantity, reserved=row.reserved - quantity)


def commit(row: ProductRecord, quantity: int) -> ProductRecord:
    """Units held for an order are sold: they leave reserved."""
    if row.reserved < quantity:
        raise NotReservedError(row.sku, row.reserved, quantity)
    return replace(row, reserved=row.reserved - quantity)


STOCK_KINDS = {"restock": restock, "reserve": reserve, "release": release, "commit": commit}
STOCK_EVENTS = {
    "restock": "StockRestocked",
    "reserve": "StockReserved",
    "release": "StockReleased",
    "commit": "StockCommitted",
}


def stock_event(command: StockCommand, after: ProductRecord) -> dict[str, Any]:
    """The payload of a stock movement's event: what moved, and the stock after it."""
    return {
        "sku": command.sku,
        "quantity": command.quantity,
        "available": after.available,
        "reserved": after.reserved,
        "operation": command.op.key,
    }


def product_view(row: ProductRecord) -> dict[str, Any]:
    """A product as callers see it, as JSON-ready values."""
    return {
        "sku": row.sku,
        "name": row.name,
        "price": row.price,
        "currency": row.currency,
        "available": row.available,
        "updated_at": row.updated_at.isoformat(),
    }


def new_row(cmd: NewProduct, partition: int, now: datetime) -> ProductRecord:
    """The first row of a new product."""
    return ProductRecord(
        sku=cmd.sku,
        name=cmd.name.strip(),
        price=cmd.price,
        currency=cmd.currency,
        available=cmd.initial_stock,
        reserved=0,
        partition=partition,
        version=1,
        updated_at=now,
    )
