"""Placement: keys hash to fixed partitions, each owned by exactly one shard."""

from __future__ import annotations

from collections import Counter

import pytest

from actors.placement import Partitioning


def test_every_partition_has_exactly_one_owner() -> None:
    layout = Partitioning(partitions=64, shards=5)
    owners = Counter(p for shard in range(5) for p in layout.partitions_of(shard))
    assert set(owners) == set(range(64))
    assert set(owners.values()) == {1}


def test_a_key_always_hashes_to_the_same_partition_and_owner() -> None:
    layout = Partitioning(partitions=64, shards=3)
    assert layout.partition_of("SKU-1") == Partitioning(64, 7).partition_of("SKU-1")
    owner = layout.owner_of("SKU-1")
    assert layout.partition_of("SKU-1") in layout.partitions_of(owner)


def test_the_partition_of_a_key_is_fixed_across_releases() -> None:
    # Stored rows carry their partition: changing the hash is a data migration.
    layout = Partitioning(partitions=16, shards=2)
    assert [layout.partition_of(k) for k in ("SKU-1", "SKU-2", "a", "")] == [
        Partitioning(16, 1).partition_of(k) for k in ("SKU-1", "SKU-2", "a", "")
    ]
    assert layout.partition_of("SKU-1") == 4
    assert layout.partition_of("00000000-0000-0000-0000-000000000001") == 8


def test_the_owner_is_the_partition_modulo_the_shard_count() -> None:
    layout = Partitioning(partitions=16, shards=3)
    for key in (f"k-{i}" for i in range(100)):
        assert layout.owner_of(key) == layout.partition_of(key) % 3


def test_keys_spread_over_partitions() -> None:
    layout = Partitioning(partitions=16, shards=2)
    counts = Counter(layout.partition_of(f"SKU-{i}") for i in range(1600))
    assert len(counts) == 16
    assert max(counts.values()) < 2 * min(counts.values())


def test_one_shard_owns_every_partition() -> None:
    assert Partitioning(partitions=4, shards=1).partitions_of(0) == (0, 1, 2, 3)


@pytest.mark.parametrize(("partitions", "shards"), [(2, 3), (4, 0), (0, 0)])
def test_an_impossible_layout_is_refused(partitions: int, shards: int) -> None:
    with pytest.raises(ValueError, match="shards"):
        Partitioning(partitions=partitions, shards=shards)
