"""The one table from error types to HTTP problems (RFC 9457), and the handlers using it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from starlette.exceptions import HTTPException

from actors._ops import (
    FieldError,
    IdempotencyConflictError,
    OperationInProgressError,
    Refusal,
    WrongShardError,
)
from actors.auth.errors import (
    AuthError,
    EmailTakenError,
    InvalidCredentialsError,
    InvalidInputError,
    MfaStateError,
    SessionNotFoundError,
    TooManyAttemptsError,
    UnknownUserError,
)
from actors.events.errors import UnknownDeadLetterError
from actors.inventory.errors import (
    InvalidProductError,
    InventoryError,
    NotReservedError,
    OutOfStockError,
    ProductExistsError,
    StockLimitError,
    UnknownProductError,
)
from actors.payments.errors import (
    BalanceLimitError,
    InsufficientFundsError,
    InvalidAmountError,
    PaymentsError,
    UnknownWalletError,
)
from sagas.errors import (
    InvalidOrderError,
    OrderStateError,
    SagaStateError,
    UnknownOrderError,
    UnknownSagaError,
)
from serve._auth import ForbiddenError, UnauthenticatedError
from serve._ratelimit import RateLimitedError, rate_limit_headers
from storage.errors import StorageError
from storage.telemetry import trace_id_var

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 1
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProblemType:
    """How one kind of failure looks on the wire."""

    status: int
    slug: str
    title: str


class BodyTooLargeError(Exception):
    """The request body is over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class UnsupportedMediaTypeError(Exception):
    """The request body is not ``application/json``."""


class OverloadedError(Exception):
    """This replica has as many requests in flight as it may take; retry shortly."""


class IdempotencyKeyRequiredError(Exception):
    """The route needs an ``Idempotency-Key`` header and the request has none."""


class InvalidCursorError(Exception):
    """A list cursor that this server did not issue."""


_UNAVAILABLE = ProblemType(503, "unavailable", "Service temporarily unavailable")
PROBLEMS: dict[type[BaseException], ProblemType] = {
    InvalidProductError: ProblemType(422, "validation", "Invalid request"),
    InvalidCursorError: ProblemType(422, "validation", "Invalid request"),
    UnknownProductError: ProblemType(404, "not-found", "Not found"),
    ProductExistsError: ProblemType(409, "conflict", "Already exists"),
    OutOfStockError: ProblemType(409, "out-of-stock", "Out of stock"),
    NotReservedError: ProblemType(409, "conflict", "Conflict"),
    StockLimitError: ProblemType(409, "stock-limit", "Stock limit reached"),
    InvalidAmountError: ProblemType(422, "validation", "Invalid request"),
    UnknownWalletError: ProblemType(404, "not-found", "Not found"),
    InsufficientFundsError: ProblemType(409, "insufficient-funds", "Insufficient funds"),
    InvalidOrderError: ProblemType(422, "validation", "Invalid request"),
    UnknownOrderError: ProblemType(404, "not-found", "Not found"),
    OrderStateError: ProblemType(409, "order-state", "Not possible in the order's status"),
    UnknownSagaError: ProblemType(404, "not-found", "Not found"),
    SagaStateError: ProblemType(409, "saga-state", "Not possible in the saga's status"),
    BalanceLimitError: ProblemType(409, "balance-limit", "Balance limit reached"),
    IdempotencyConflictError: ProblemType(
        409, "idempotency-conflict", "Idempotency key reused for another request"
    ),
    OperationInProgressError: ProblemType(
        409, "in-progress", "A request with this idempotency key is in progress"
    ),
    IdempotencyKeyRequiredError: ProblemType(
        428, "idempotency-key-required", "Idempotency-Key required"
    ),
    WrongShardError: _UNAVAILABLE,
    OverloadedError: ProblemType(503, "overloaded", "Server overloaded"),
    BodyTooLargeError: ProblemType(413, "too-large", "Request body too large"),
    UnsupportedMediaTypeError: ProblemType(415, "unsupported-media-type", "Unsupported media type"),
    RayActorError: _UNAVAILABLE,
    ActorUnavailableError: _UNAVAILABLE,
    GetTimeoutError: _UNAVAILABLE,
    UnauthenticatedError: ProblemType(401, "unauthenticated", "Authentication required"),
    InvalidCredentialsError: ProblemType(401, "unauthenticated", "Authentication required"),
    ForbiddenError: ProblemType(403, "forbidden", "Forbidden"),
    RateLimitedError: ProblemType(429, "rate-limited", "Too many requests"),
    InvalidInputError: ProblemType(422, "validation", "Invalid request"),
    EmailTakenError: ProblemType(409, "conflict", "Already exists"),
    MfaStateError: ProblemType(409, "conflict", "Conflict"),
    SessionNotFoundError: ProblemType(404, "not-found", "Not found"),
    UnknownUserError: ProblemType(404, "not-found", "Not found"),
    UnknownDeadLetterError: ProblemType(404, "not-found", "Not found"),
    TooManyAttemptsError: ProblemType(429, "too-many-attempts", "Too many failed logins"),
    AuthError: ProblemType(500, "internal", "Internal error"),
    StorageError: ProblemType(500, "internal", "Internal error"),
    InventoryError: ProblemType(500, "internal", "Internal error"),
    PaymentsError: ProblemType(500, "internal", "Internal error"),
    Refusal: ProblemType(409, "conflict", "Conflict"),
}
_INTERNAL = ProblemType(500, "internal", "Internal error")
_FIXED_DETAILS = {
    401: "A valid access token is required.",
    403: "You are not allowed to do this.",
    404: "No such resource.",
    409: "This conflicts with the current state.",
    429: "Too many requests; retry after the time in Retry-After.",
}
_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 400: "Bad request"}


def problem_type_for(exc: BaseException) -> ProblemType:
    """The problem type of ``exc``: the nearest class in the table; retryable storage → 503."""
    if isinstance(exc, StorageError) and exc.retryable:
        return _UNAVAILABLE
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return _INTERNAL


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An ``application/problem+json`` response carrying the request's trace id."""
    body: dict[str, Any] = {
        "type": f"urn:shoal:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "trace_id": trace_id_var.get(),
    }
    if errors is not None:
        body["errors"] = errors
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return Response(json.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Details that say more than the status, for failures whose fields are safe to show.
_DETAILS: dict[type[BaseException], Callable[[Any], str]] = {
    UnknownProductError: lambda e: f"No product with SKU {e.sku!r}.",
    OutOfStockError: lambda e: (
        f"Only {e.available} of {e.sku!r} are available; {e.requested} were asked."
    ),
    InsufficientFundsError: lambda e: f"The balance is {e.balance}; {e.requested} were asked.",
    OrderStateError: lambda e: f"The order is {e.status}; only a CONFIRMED order can be cancelled.",
    SagaStateError: lambda e: f"The saga is {e.status}: {e.detail}.",
    IdempotencyConflictError: lambda _: "This Idempotency-Key was used for a different request.",
    OperationInProgressError: lambda _: (
        "A request with this Idempotency-Key is still being processed; retry shortly."
    ),
    IdempotencyKeyRequiredError: lambda _: (
        "Send an Idempotency-Key header (1..255 printable characters)."
    ),
    BodyTooLargeError: lambda e: f"The body is larger than {e.limit} bytes.",
    UnsupportedMediaTypeError: lambda _: "Send the body as application/json.",
}


def _detail(exc: BaseException, problem: ProblemType) -> str:
    if problem.status >= 500:
        if problem.status == 503:
            return "The request could not be completed; retry later."
        return "An unexpected error occurred."
    for cls in type(exc).__mro__:
        if cls in _DETAILS:
            return _DETAILS[cls](exc)
    return _FIXED_DETAILS.get(problem.status) or str(exc) or problem.title


def problem_for(exc: BaseException) -> Response:
    """The problem response for ``exc``, as the table says; 5xx details are never shown."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, Exception):
        exc = exc.cause  # an error raised in an actor: answer for the original
    problem = problem_type_for(exc)
    if problem.status >= 500:
        log.error("request_failed", error=type(exc).__name__, exc_info=exc)
    errors, headers = None, None
    if isinstance(exc, FieldError):
        errors = [{"field": exc.field, "message": exc.message}]
    elif isinstance(exc, InvalidCursorError):
        errors = [{"field": "cursor", "message": "not a cursor this server issued"}]
    if problem.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="shoal"'}
    elif isinstance(exc, RateLimitedError):
        headers = rate_limit_headers(exc.decision)
    elif isinstance(exc, OperationInProgressError):
        headers = {"Retry-After": "1"}
    elif isinstance(exc, TooManyAttemptsError):
        headers = {"Retry-After": str(max(1, exc.retry_after_s))}
    return problem_response(
        problem.status,
        problem.slug,
        problem.title,
        _detail(exc, problem),
        errors=errors,
        headers=headers,
    )


async def _domain_error(_: Request, exc: Exception) -> Response:
    return problem_for(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body",
            "message": str(err.get("msg", "invalid")),
        }
        for err in exc.errors()
    ]
    return problem_response(
        422, "validation", "Invalid request", "The request is not valid.", errors=errors
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = _HTTP_TITLES.get(exc.status_code, "Error")
    detail = "No such resource." if exc.status_code == 404 else title + "."
    return problem_response(
        exc.status_code,
        title.lower().replace(" ", "-"),
        title,
        detail,
        headers=dict(exc.headers or {}),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the table above; nothing internal leaks."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for exc_type in PROBLEMS:
        app.add_exception_handler(exc_type, _domain_error)  # type: ignore[arg-type]
