"""Which id a request is traced by: W3C ``traceparent``, then ``X-Request-ID``, then a new one."""

from __future__ import annotations

import random
import re
from typing import Any

from starlette.middleware import Middleware

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def trace_id_from_traceparent(value: str | None) -> str | None:
    """The trace-id of a valid ``traceparent`` header, else ``None``."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00" and rest:
        return None
    return trace_id


def resolve_request_id(traceparent: str | None, request_id: str | None) -> str:
    """The id that every log line, event and outgoing call of this request carries."""
    trace_id = trace_id_from_traceparent(traceparent)
    if trace_id is not None:
        return trace_id
    if request_id and _REQUEST_ID.fullmatch(request_id):
        return request_id
    # Ids need to be unique, not unguessable: the PRNG is far cheaper than uuid4's urandom.
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    """Puts the resolved id in the request's ``X-Request-ID`` and exactly once in the response.

    Installed in front of Ray Serve's own request-id middleware (see :func:`edge_middlewares`),
    so Serve adopts our id instead of minting another, and again inside the app so the app
    behaves the same without Serve. Applying it twice changes nothing.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        traceparent = request_id = None
        for key, value in headers:
            if key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"x-request-id":
                request_id = value.decode("latin-1")
        rid = resolve_request_id(traceparent, request_id)
        if rid != request_id:
            scope["headers"] = [(k, v) for k, v in headers if k != b"x-request-id"]
            scope["headers"].append((b"x-request-id", rid.encode()))
        pair = (b"x-request-id", rid.encode())

        async def send_once(message: Any) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                message["headers"] = [*kept, pair]
            await send(message)

        await self.app(scope, receive, send_once)


def edge_middlewares() -> list[Any]:
    """Serve's HTTP proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(RequestIdMiddleware)]
