"""Inventory errors. Each survives pickling, because it crosses Ray process boundaries.

Refusals (:class:`actors._ops.Refusal`) are business answers, recorded with the operation
and given again for a repeated key; the others are failures of the call itself.
"""

from __future__ import annotations

from actors._ops import FieldError, Refusal


class InventoryError(Exception):
    """Root of inventory failures.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    retryable = False


class InvalidProductError(FieldError, InventoryError):
    """A product's fields or a quantity break the catalogue rules."""


class ProductExistsError(InventoryError, Refusal):
    """A product with that SKU exists already."""

    code = "product_exists"

    def __init__(self, sku: str) -> None:
        Refusal.__init__(self, sku=sku)
        self.sku = sku


class UnknownProductError(InventoryError, Refusal):
    """No product has that SKU."""

    code = "unknown_product"

    def __init__(self, sku: str) -> None:
        Refusal.__init__(self, sku=sku)
        self.sku = sku


class OutOfStockError(InventoryError, Refusal):
    """Fewer units are available than were asked for."""

    code = "out_of_stock"

    def __init__(self, sku: str, available: int, requested: int) -> None:
        Refusal.__init__(self, sku=sku, available=available, requested=requested)
        self.sku = sku
        self.available = available
        self.requested = requested


class StockLimitError(InventoryError, Refusal):
    """The change would take a product's stock past the largest count kept."""

    code = "stock_limit"

    def __init__(self, sku: str, limit: int) -> None:
        Refusal.__init__(self, sku=sku, limit=limit)
        self.sku = sku
        self.limit = limit


class NotReservedError(InventoryError, Refusal):
    """A release or commit names more units than are reserved."""

    code = "not_reserved"

    def __init__(self, sku: str, reserved: int, requested: int) -> None:
        Refusal.__init__(self, sku=sku, reserved=reserved, requested=requested)
        self.sku = sku
        self.reserved = reserved
        self.requested = requested
