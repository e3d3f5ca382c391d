"""What every write route does: name the operation, send it to its owner, answer the outcome.

The operation's key is the client's ``Idempotency-Key`` scoped to the caller, and its
fingerprint covers the method, the path and the body as canonical JSON; the owning shard
stores the outcome with the effect, so a repeated request is answered from there, with the
first response's status and body (and ``Idempotent-Replayed: true``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from actors._ops import Operation
from actors.router import ShardRouter
from serve._auth import Principal
from serve.errors import IdempotencyKeyRequiredError, problem_for
from storage.telemetry import trace_id_var

REPLAYED = {"Idempotent-Replayed": "true"}


def operation(
    request: Request, principal: Principal, key: str | None, body: Mapping[str, Any] | None
) -> Operation:
    """The operation of this request: keyed by the caller's key, or unrepeatable without one."""
    asked = {"method": request.method, "path": request.url.path, "body": body}
    if key is None:
        return Operation.once(asked, trace_id_var.get())
    return Operation.of(f"http:{principal.user_id}:{key}", asked, trace_id_var.get())


def required(key: str | None) -> str:
    """``key``, which this route requires.

    Raises:
        IdempotencyKeyRequiredError: there is none.
    """
    if key is None:
        raise IdempotencyKeyRequiredError()
    return key


async def write(
    router: ShardRouter,
    key: str,
    command: Any,
    shape: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Apply ``command`` at the owner of ``key`` and answer its outcome.

    A refusal is answered as its problem; a replayed outcome says so in a header.
    """
    outcome = await router.apply(key, command)
    if outcome.refusal is not None:
        response = problem_for(outcome.refusal)
    else:
        assert outcome.value is not None
        response = JSONResponse(dict(shape(outcome.value)), status_code, headers=headers)
    if outcome.replayed:
        response.headers.update(REPLAYED)
    return response
