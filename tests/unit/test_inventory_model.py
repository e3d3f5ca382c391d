"""Inventory's pure rules: catalogue fields, commands, and how stock moves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors._ops import MAX_AMOUNT, MAX_QUANTITY, Operation
from actors.inventory.errors import (
    InvalidProductError,
    NotReservedError,
    OutOfStockError,
    StockLimitError,
)
from actors.inventory.model import (
    MAX_NAME,
    MAX_STOCK,
    STOCK_KINDS,
    NewProduct,
    StockCommand,
    UpdateProduct,
    check_name,
    check_price,
    check_quantity,
    check_sku,
    commit,
    new_row,
    product_view,
    release,
    reserve,
    restock,
)
from storage.records import ProductRecord

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
OP = Operation.of("k", {})


def row(available: int = 10, reserved: int = 0) -> ProductRecord:
    return ProductRecord("SKU-1", "Tea", 100, "USD", available, reserved, 3, 4, NOW)


@pytest.mark.parametrize("sku", ["", "a b", "x" * 65, "semi;colon", "../etc", "ü", "a/b"])
def test_malformed_skus_are_refused(sku: str) -> None:
    with pytest.raises(InvalidProductError) as info:
        check_sku(sku)
    assert info.value.field == "sku"


@pytest.mark.parametrize("sku", ["a", "SKU-1", "x.y_z-0", "x" * 64])
def test_wellformed_skus_are_kept(sku: str) -> None:
    assert check_sku(sku) == sku


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("price", {"price": 0}),
        ("price", {"price": -5}),
        ("price", {"price": MAX_AMOUNT + 1}),
        ("price", {"price": 1.5}),
        ("price", {"price": True}),
        ("initial_stock", {"initial_stock": -1}),
        ("initial_stock", {"initial_stock": MAX_QUANTITY + 1}),
        ("initial_stock", {"initial_stock": 2.0}),
        ("initial_stock", {"initial_stock": False}),
        ("name", {"name": "   "}),
        ("name", {"name": "n" * (MAX_NAME + 1)}),
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


def test_a_new_product_may_start_without_stock_and_at_the_limits() -> None:
    NewProduct("OK-1", "n" * MAX_NAME, MAX_AMOUNT, "USD", 0)
    NewProduct("OK-1", "n", 1, "USD", MAX_QUANTITY)


@pytest.mark.parametrize("quantity", [True, False, 1.0, 0, -1, MAX_QUANTITY + 1, "3", None])
def test_check_quantity_refuses_anything_but_a_whole_count_in_range(quantity: object) -> None:
    with pytest.raises(InvalidProductError) as info:
        check_quantity(quantity, "units")  # type: ignore[arg-type]
    assert info.value.field == "units"


@pytest.mark.parametrize("quantity", [1, 7, MAX_QUANTITY])
def test_check_quantity_keeps_a_whole_count_in_range(quantity: int) -> None:
    assert check_quantity(quantity) == quantity


@pytest.mark.parametrize("price", [True, 0, -1, 2.5, MAX_AMOUNT + 1])
def test_check_price_refuses_anything_but_a_whole_amount_in_range(price: object) -> None:
    with pytest.raises(InvalidProductError):
        check_price(price)  # type: ignore[arg-type]


def test_check_name_strips_blanks() -> None:
    assert check_name("  Green tea\t") == "Green tea"


@pytest.mark.parametrize(
    ("kind", "quantity", "field"),
    [("restock", 0, "quantity"), ("reserve", True, "quantity"), ("steal", 1, "kind")],
)
def test_a_stock_command_is_checked_on_construction(kind: str, quantity: int, field: str) -> None:
    with pytest.raises(InvalidProductError) as info:
        StockCommand(OP, "SKU-1", kind, quantity)
    assert info.value.field == field


def test_every_stock_kind_has_a_rule() -> None:
    assert set(STOCK_KINDS) == {"restock", "reserve", "release", "commit"}
    for kind in STOCK_KINDS:
        StockCommand(OP, "SKU-1", kind, 1)


def test_an_update_strips_the_name_and_checks_the_price() -> None:
    assert UpdateProduct(OP, "SKU-1", name="  Tea  ").name == "Tea"
    assert UpdateProduct(OP, "SKU-1") == UpdateProduct(OP, "SKU-1", None, None)
    with pytest.raises(InvalidProductError):
        UpdateProduct(OP, "SKU-1", price=0)
    with pytest.raises(InvalidProductError):
        UpdateProduct(OP, "SKU-1", name=" ")
    with pytest.raises(InvalidProductError):
        UpdateProduct(OP, "bad sku")


def test_restock_makes_more_available() -> None:
    after = restock(row(10, 2), 5)
    assert (after.available, after.reserved) == (15, 2)
    assert after.version == row().version  # versions are the writer's business


def test_restock_past_the_largest_count_is_refused() -> None:
    assert restock(row(MAX_STOCK - 3, 2), 1).available == MAX_STOCK - 2
    with pytest.raises(StockLimitError) as info:
        restock(row(MAX_STOCK - 3, 2), 2)
    assert info.value.detail == {"sku": "SKU-1", "limit": MAX_STOCK}


def test_reserve_holds_available_units() -> None:
    after = reserve(row(10, 1), 10)
    assert (after.available, after.reserved) == (0, 11)


def test_reserving_more_than_available_is_out_of_stock() -> None:
    with pytest.raises(OutOfStockError) as info:
        reserve(row(3, 5), 4)
    assert (info.value.available, info.value.requested) == (3, 4)


def test_release_gives_held_units_back() -> None:
    after = release(row(1, 5), 5)
    assert (after.available, after.reserved) == (6, 0)


def test_commit_sells_held_units() -> None:
    after = commit(row(1, 5), 2)
    assert (after.available, after.reserved) == (1, 3)


@pytest.mark.parametrize("rule", [release, commit])
def test_releasing_or_committing_more_than_reserved_is_refused(rule: object) -> None:
    with pytest.raises(NotReservedError) as info:
        rule(row(100, 2), 3)  # type: ignore[operator]
    assert (info.value.reserved, info.value.requested) == (2, 3)


@pytest.mark.parametrize("kind", sorted(STOCK_KINDS))
def test_no_rule_makes_units_out_of_nothing(kind: str) -> None:
    before = row(10, 4)
    after = STOCK_KINDS[kind](before, 3)
    total = {"restock": 3, "reserve": 0, "release": 0, "commit": -3}[kind]
    assert after.available + after.reserved == before.available + before.reserved + total
    assert min(after.available, after.reserved) >= 0


def test_a_new_row_starts_at_version_one_with_nothing_reserved() -> None:
    created = new_row(NewProduct("SKU-9", "  Tea ", 100, "EUR", 4), partition=5, now=NOW)
    assert created == ProductRecord("SKU-9", "Tea", 100, "EUR", 4, 0, 5, 1, NOW)


def test_the_product_view_hides_reserved_units() -> None:
    assert product_view(row(10, 3)) == {
        "sku": "SKU-1",
        "name": "Tea",
        "price": 100,
        "currency": "USD",
        "available": 10,
        "updated_at": NOW.isoformat(),
    }
