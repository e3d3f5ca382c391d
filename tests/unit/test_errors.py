"""Errors cross Ray process boundaries: each must survive pickling with its fields."""

from __future__ import annotations

import pickle

import pytest

from actors import _ops as ops
from actors.auth import errors as auth_errors
from actors.inventory import errors as inventory_errors
from actors.payments import errors as payments_errors
from sagas import errors as saga_errors
from serve.errors import BodyTooLargeError, problem_type_for
from storage import errors as storage_errors

MODULES = (auth_errors, inventory_errors, payments_errors, saga_errors, storage_errors, ops)

SAMPLES: list[Exception] = [
    auth_errors.AuthError("x"),
    auth_errors.InvalidCredentialsError(),
    auth_errors.InvalidInputError("email", "not an email"),
    auth_errors.WeakPasswordError("too short"),
    auth_errors.EmailTakenError(),
    auth_errors.SessionNotFoundError("abc"),
    auth_errors.UnknownUserError("abc"),
    auth_errors.UnknownRoleError("wizard"),
    auth_errors.TooManyAttemptsError(42),
    auth_errors.MfaStateError("MFA is off."),
    inventory_errors.InventoryError("x"),
    inventory_errors.InvalidProductError("price", "must be positive"),
    inventory_errors.ProductExistsError("SKU-1"),
    inventory_errors.UnknownProductError("SKU-1"),
    inventory_errors.OutOfStockError("SKU-1", 2, 5),
    inventory_errors.StockLimitError("SKU-1", 10**12),
    inventory_errors.NotReservedError("SKU-1", 0, 3),
    payments_errors.PaymentsError("x"),
    payments_errors.InvalidAmountError("amount", "must be positive"),
    payments_errors.UnknownWalletError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e"),
    payments_errors.InsufficientFundsError("w", 10, 25),
    payments_errors.BalanceLimitError("w", 10**15),
    saga_errors.SagaError("x"),
    saga_errors.StepFailedError("out_of_stock"),
    saga_errors.InvalidOrderError("items", "must have 1..50 lines"),
    saga_errors.UnknownOrderError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e"),
    saga_errors.OrderStateError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e", "PENDING"),
    saga_errors.UnknownSagaError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e"),
    saga_errors.SagaStateError("0b7c6a36-7d7a-4a39-9df5-0b3c3a3c2f1e", "COMPLETED", "done"),
    ops.FieldError("amount", "must be positive"),
    ops.Refusal(why="no"),
    ops.FencedRefusal("saga:1:reserve:SKU-1"),
    ops.IdempotencyConflictError("http:u:k"),
    ops.OperationInProgressError("http:u:k"),
    ops.WrongShardError("SKU-1", 3, 4),
    storage_errors.StorageError("x"),
    storage_errors.StorageUnavailableError("down"),
    storage_errors.StorageTimeoutError("slow"),
    storage_errors.ConflictError("dup"),
    storage_errors.SerializationFailureError("retry"),
    storage_errors.ConnectionBudgetError("too many"),
    storage_errors.StaleWriteError("moved"),
]
PICKLED = list(SAMPLES)


def test_every_error_class_has_a_sample() -> None:
    classes = {
        obj
        for module in MODULES
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == module.__name__
    }
    assert classes == {type(e) for e in SAMPLES}


@pytest.mark.parametrize("error", PICKLED, ids=lambda e: type(e).__name__)
def test_error_survives_pickle(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (inventory_errors.InvalidProductError("price", "bad"), 422),
        (inventory_errors.UnknownProductError("S"), 404),
        (inventory_errors.ProductExistsError("S"), 409),
        (inventory_errors.OutOfStockError("S", 1, 2), 409),
        (inventory_errors.NotReservedError("S", 0, 2), 409),
        (inventory_errors.StockLimitError("S", 10), 409),
        (payments_errors.InvalidAmountError("amount", "bad"), 422),
        (payments_errors.UnknownWalletError("w"), 404),
        (payments_errors.InsufficientFundsError("w", 1, 2), 409),
        (payments_errors.BalanceLimitError("w", 10), 409),
        (ops.IdempotencyConflictError("k"), 409),
        (ops.OperationInProgressError("k"), 409),
        (ops.WrongShardError("S", 1, 2), 503),
        (storage_errors.StaleWriteError(), 503),
        (storage_errors.StorageUnavailableError(), 503),
        (storage_errors.StorageTimeoutError(), 503),
        (storage_errors.ConflictError(), 500),
        (BodyTooLargeError(10), 413),
        (RuntimeError("boom"), 500),
        (auth_errors.InvalidCredentialsError(), 401),
        (auth_errors.WeakPasswordError("short"), 422),
        (auth_errors.EmailTakenError(), 409),
        (auth_errors.SessionNotFoundError("x"), 404),
        (auth_errors.UnknownUserError("x"), 404),
        (auth_errors.UnknownRoleError("wizard"), 422),
        (auth_errors.TooManyAttemptsError(3), 429),
        (auth_errors.MfaStateError("MFA is off."), 409),
    ],
)
def test_problem_status_of_each_error(error: Exception, status: int) -> None:
    assert problem_type_for(error).status == status


def test_only_infrastructure_errors_are_retryable() -> None:
    retryable = {type(e).__name__ for e in SAMPLES if getattr(e, "retryable", False)}
    assert retryable == {
        "WrongShardError",
        "OperationInProgressError",
        "StaleWriteError",
        "StorageUnavailableError",
        "StorageTimeoutError",
        "SerializationFailureError",
    }
