"""The gateway's ASGI layer: trace id binding, body limits, content types, metrics, failures.

Pure ASGI rather than ``BaseHTTPMiddleware``: it runs on every request, so it must not
buffer bodies or add a task per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serve._ratelimit import rate_limit_headers
from serve._tracing import resolve_request_id
from serve.errors import (
    BodyTooLargeError,
    OverloadedError,
    UnsupportedMediaTypeError,
    problem_for,
)
from storage.telemetry import HTTP_LATENCY, HTTP_REQUESTS, trace_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
# Every response is data for a program, never a page to render or frame.
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_HSTS = ((b"strict-transport-security", b"max-age=31536000"),)
_DOC_PAGES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def _rate_limit_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    decision = scope.get("state", {}).get("rate_limit")
    if decision is None:
        return []
    return [(k.lower().encode(), v.encode()) for k, v in rate_limit_headers(decision).items()]


def _with_security_headers(
    headers: Any, path: str, extra: tuple[tuple[bytes, bytes], ...]
) -> list[tuple[bytes, bytes]]:
    present = {k.lower() for k, _ in headers}
    added = [h for h in extra if h[0] not in present]
    if path not in _DOC_PAGES and _CSP[0] not in present:  # the docs page runs Swagger UI
        added.append(_CSP)
    if b"cache-control" not in present:
        added.append((b"cache-control", b"no-store"))
    return [*headers, *added]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _check_body_headers(scope: Scope, max_body: int) -> Exception | None:
    length = _header(scope, b"content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body):
        return BodyTooLargeError(max_body)
    if scope["method"] in _BODY_METHODS and (length not in (None, "0")):
        media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            return UnsupportedMediaTypeError()
    return None


class GatewayMiddleware:
    """Binds the trace id, enforces body rules, measures, and turns any failure into a problem.

    It also sheds load: past ``max_in_flight`` requests in this replica, new ones get an
    immediate 503 with ``Retry-After`` instead of waiting (operations routes are exempt, so
    probes and scrapes still answer under load).
    """

    def __init__(
        self, app: ASGIApp, max_body: int, max_in_flight: int, https: bool = False
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.security_headers = _SECURITY_HEADERS + (_HSTS if https else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = resolve_request_id(_header(scope, b"traceparent"), _header(scope, b"x-request-id"))
        token = trace_id_var.set(rid)
        started, status = time.perf_counter(), 0

        async def send_tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _with_security_headers(
                    message.get("headers", ()), scope["path"], self.security_headers
                ) + _rate_limit_headers(scope)
            await send(message)

        refused = self._refusal(scope)
        if refused is None:
            self.in_flight += 1
        try:
            if refused is not None:
                await problem_for(refused)(scope, receive, send_tracking)
            else:
                await self.app(scope, self._limited(receive), send_tracking)
        except Exception as exc:
            if status:
                raise  # the response has begun; the server can only drop the connection
            await problem_for(exc)(scope, receive, send_tracking)
        finally:
            if refused is None:
                self.in_flight -= 1
            route, method = _route_label(scope), scope["method"]
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
            trace_id_var.reset(token)

    def _refusal(self, scope: Scope) -> Exception | None:
        if self.in_flight >= self.max_in_flight and scope["path"] not in _EXEMPT:
            return OverloadedError()
        return _check_body_headers(scope, self.max_body)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLargeError(self.max_body)
            return message

        return receive_limited
