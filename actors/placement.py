"""Placement: keys hash to a fixed number of partitions, each owned by one shard."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


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
