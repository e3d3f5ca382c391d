from __future__ import annotations

from collections import Counter

import pytest

from actors.inventory.errors import InvalidProductError
from actors.inventory.model import NewProduct, Partitioning, check_sku


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


def test_keys_spread_over_partitions() -> None:
    layout = Partitioning(partitions=16, shards=2)
    counts = Counter(layout.partition_of(f"SKU-{i}") for i in range(1600))
    assert len(counts) == 16
    assert max(counts.values()) < 2 * min(counts.values())


def test_more_shards_than_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="shards"):
        Partitioning(partitions=2, shards=3)


@pytest.mark.parametrize("sku", ["", "a b", "x" * 65, "semi;colon", "../etc", "ü"])
def test_malformed_skus_are_refused(sku: str) -> None:
    with pytest.raises(InvalidProductError):
        check_sku(sku)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("price", {"price": 0}),
        ("price", {"price": 10**12 + 1}),
        ("initial_stock", {"initial_stock": -1}),
        ("initial_stock", {"initial_stock": 10**6 + 1}),
        ("name", {"name": "   "}),
        ("sku", {"sku": "bad sku"}),
    ],
)
def test_new_product_rules(field: str, kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "sku": "OK-1",
        "name": "n",
        "price": 1,
        "currency": "USD",
        "initial_stock": 0,
    }
    with pytest.raises(InvalidProductError) as info:
        NewProduct(**{**base, **kwargs})  # type: ignore[arg-type]
    assert info.value.field == field
