"""Idempotent commands: operations, outcomes as stored, refusals across processes."""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import UTC, datetime

import pytest

from actors._ops import (
    Draft,
    FencedRefusal,
    IdempotencyConflictError,
    Operation,
    OperationInProgressError,
    Outcome,
    Refusal,
    WrongShardError,
    canonical_json,
)
from actors.inventory import errors as inventory_errors
from actors.payments import errors as payments_errors
from sagas import errors as saga_errors

REFUSALS: list[Refusal] = [
    inventory_errors.ProductExistsError("SKU-1"),
    inventory_errors.UnknownProductError("SKU-1"),
    inventory_errors.OutOfStockError("SKU-1", 2, 5),
    inventory_errors.StockLimitError("SKU-1", 10**12),
    inventory_errors.NotReservedError("SKU-1", 0, 3),
    payments_errors.UnknownWalletError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e"),
    payments_errors.InsufficientFundsError("w", 10, 25),
    payments_errors.BalanceLimitError("w", 10**15),
    FencedRefusal("saga:1:reserve:SKU-1"),
    saga_errors.UnknownOrderError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e"),
    saga_errors.OrderStateError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e", "PENDING"),
]


def test_every_refusal_class_has_a_sample() -> None:
    assert set(Refusal._by_code.values()) == {Refusal} | {type(r) for r in REFUSALS}


def test_refusal_codes_are_unique() -> None:
    assert len({r.code for r in REFUSALS}) == len(REFUSALS)


def test_the_fingerprint_is_the_digest_of_canonical_json() -> None:
    op = Operation.of("k", {"b": [1, 2], "a": "é"})
    expected = hashlib.sha256('{"a":"é","b":[1,2]}'.encode()).hexdigest()
    assert op == Operation("k", expected)


def test_the_fingerprint_ignores_key_order_and_whitespace() -> None:
    first = Operation.of("k", {"sku": "S", "quantity": 2, "nested": {"y": 1, "x": 2}})
    second = Operation.of(
        "k", json.loads('{ "nested": {"x": 2, "y": 1}, "quantity": 2, "sku": "S" }')
    )
    assert first == second


@pytest.mark.parametrize(
    "other",
    [{"sku": "S", "quantity": 3}, {"sku": "T", "quantity": 2}, {"sku": "S"}, ["S", 2]],
)
def test_another_request_has_another_fingerprint(other: object) -> None:
    assert Operation.of("k", {"sku": "S", "quantity": 2}).fingerprint != (
        Operation.of("k", other).fingerprint
    )


def test_the_fingerprint_does_not_depend_on_the_key() -> None:
    assert Operation.of("a", [1]).fingerprint == Operation.of("b", [1]).fingerprint


def test_canonical_json_is_compact_and_sorted() -> None:
    assert canonical_json({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'


def test_an_operation_without_a_key_is_never_repeated() -> None:
    first, second = Operation.once({"a": 1}), Operation.once({"a": 1})
    assert first.key.startswith("once:") and second.key.startswith("once:")
    assert first.key != second.key
    assert first.fingerprint == second.fingerprint


def test_an_applied_outcome_round_trips_as_replayed() -> None:
    outcome = Outcome(value={"balance": 5, "movement_id": "m", "nested": {"a": [1, None]}})
    stored = outcome.to_json()
    again = Outcome.from_json(stored)
    assert again == Outcome(value=outcome.value, replayed=True)
    assert again.unwrap() == outcome.value
    assert not outcome.replayed


def test_a_stored_outcome_is_canonical_json() -> None:
    assert Outcome(value={"b": 1, "a": 2}).to_json() == '{"value":{"a":2,"b":1}}'


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: type(r).__name__)
def test_a_refused_outcome_round_trips_with_its_refusal(refusal: Refusal) -> None:
    again = Outcome.from_json(Outcome(refusal=refusal).to_json())
    assert again.replayed and again.value is None
    assert type(again.refusal) is type(refusal)
    assert again.refusal is not None
    assert vars(again.refusal) == vars(refusal)
    assert again.refusal.args == refusal.args
    with pytest.raises(type(refusal)):
        again.unwrap()


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: type(r).__name__)
def test_a_refusal_survives_pickle(refusal: Refusal) -> None:
    copy = pickle.loads(pickle.dumps(refusal))
    assert type(copy) is type(refusal)
    assert vars(copy) == vars(refusal)
    assert copy.args == refusal.args
    assert str(copy) == str(refusal)


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: type(r).__name__)
def test_a_refusal_is_final(refusal: Refusal) -> None:
    assert refusal.retryable is False
    assert str(refusal).startswith(f"{refusal.code}: ")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (IdempotencyConflictError("k"), False),
        (OperationInProgressError("k"), True),
        (WrongShardError("SKU-1", 3, 4), True),
    ],
    ids=lambda e: type(e).__name__,
)
def test_call_errors_survive_pickle(error: Exception, retryable: bool) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert getattr(copy, "retryable", False) is retryable


def test_a_draft_sees_its_own_changes_over_the_base() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    draft = Draft(base={"a": "old a", "gone": None}, now=now)
    draft.put("a", "new a")
    draft.put("b", "new b")
    draft.put("gone", "back")
    assert (draft.get("a"), draft.get("b"), draft.get("c")) == ("new a", "new b", None)
    assert draft.created == {"b", "gone"}
    assert draft.base == {"a": "old a", "gone": None}  # the committed rows are not touched
    assert draft.now == now
