"""Errors cross Ray process boundaries: each must survive pickling with its fields."""

from __future__ import annotations

import pickle

import pytest

from actors.auth import errors as auth_errors
from actors.inventory import errors as inventory_errors
from serve.errors import BodyTooLargeError, problem_type_for
from storage import errors as storage_errors

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
    inventory_errors.WrongShardError("SKU-1", 3),
    storage_errors.StorageError("x"),
    storage_errors.StorageUnavailableError("down"),
    storage_errors.StorageTimeoutError("slow"),
    storage_errors.ConflictError("dup"),
    storage_errors.SerializationFailureError("retry"),
    storage_errors.ConnectionBudgetError("too many"),
]


def test_every_error_class_has_a_sample() -> None:
    classes = {
        obj
        for module in (auth_errors, inventory_errors, storage_errors)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == module.__name__
    }
    assert classes == {type(e) for e in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
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
        (inventory_errors.WrongShardError("S", 1), 503),
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
        "StorageUnavailableError",
        "StorageTimeoutError",
        "SerializationFailureError",
    }
