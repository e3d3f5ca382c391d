"""Inventory errors. Each survives pickling, because it crosses Ray process boundaries."""

from __future__ import annotations


class InventoryError(Exception):
    """Root of inventory failures.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    retryable = False


class InvalidProductError(InventoryError):
    """A product's fields break the catalogue rules."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ProductExistsError(InventoryError):
    """A product with that SKU exists already, with other data."""

    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku


class UnknownProductError(InventoryError):
    """No product has that SKU."""

    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku


class WrongShardError(InventoryError):
    """The call reached a shard that does not own the SKU's partition; route it again."""

    retryable = True

    def __init__(self, sku: str, shard: int) -> None:
        super().__init__(sku, shard)
        self.sku = sku
        self.shard = shard
