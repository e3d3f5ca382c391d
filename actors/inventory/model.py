"""Inventory's pure rules: SKUs, new products, and which shard owns which partition."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from actors.inventory.errors import InvalidProductError

SKU_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_AMOUNT = 10**12
MAX_QUANTITY = 10**6
MAX_NAME = 200


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
        if not 1 <= len(self.name.strip()) <= MAX_NAME:
            raise InvalidProductError("name", f"must be 1..{MAX_NAME} characters")
        if not 1 <= self.price <= MAX_AMOUNT:
            raise InvalidProductError("price", f"must be an integer 1..{MAX_AMOUNT}")
        if not 0 <= self.initial_stock <= MAX_QUANTITY:
            raise InvalidProductError("initial_stock", f"must be an integer 0..{MAX_QUANTITY}")


@dataclass(frozen=True, slots=True)
class Partitioning:
    """A fixed number of partitions, each owned by exactly one of ``shards`` owners.

    A key's partition never changes; which shard owns a partition depends only on the
    shard count, so every process computes the same owner without asking anyone.
    """

    partitions: int
    shards: int

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= self.partitions:
            raise ValueError("need 1 <= shards <= partitions")

    def partition_of(self, key: str) -> int:
        """The partition ``key`` hashes to (stable across processes and releases)."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.partitions

    def owner_of(self, key: str) -> int:
        """The shard that owns ``key``."""
        return self.partition_of(key) % self.shards

    def partitions_of(self, shard: int) -> tuple[int, ...]:
        """The partitions ``shard`` owns."""
        return tuple(range(shard, self.partitions, self.shards))
