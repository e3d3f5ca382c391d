"""The gateway middleware on its own (ASGI in memory): shedding, limits, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from serve._middleware import GatewayMiddleware


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def ok(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_requests_past_the_in_flight_limit_are_shed_at_once() -> None:
    release, both_in, entered = asyncio.Event(), asyncio.Event(), []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        entered.append(1)
        if len(entered) == 2:
            both_in.set()
        await release.wait()
        await ok(send)

    gateway = GatewayMiddleware(slow, max_body=1024, max_in_flight=2)
    async with client(gateway) as http:
        held = [asyncio.create_task(http.get("/products")) for _ in range(2)]
        await both_in.wait()
        shed = await http.get("/products")
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["content-type"] == "application/problem+json"
        assert shed.json()["type"] == "urn:shoal:problem:overloaded"
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    assert gateway.in_flight == 0


async def test_probes_are_not_shed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await ok(send)

    gateway = GatewayMiddleware(app, max_body=1024, max_in_flight=1)
    gateway.in_flight = 1  # as if one request were being served
    async with client(gateway) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/products")).status_code == 503


async def test_a_chunked_body_over_the_limit_is_413() -> None:
    async def reader(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await ok(send)

    async def chunks() -> Any:
        for _ in range(4):
            yield b"x" * 600

    async with client(GatewayMiddleware(reader, max_body=1024, max_in_flight=8)) as http:
        response = await http.post(
            "/products", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


async def test_an_unexpected_failure_is_a_500_problem_without_details() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret table name")

    async with client(GatewayMiddleware(broken, max_body=1024, max_in_flight=8)) as http:
        response = await http.get("/products", headers={"x-request-id": "rid-1"})
    assert response.status_code == 500
    body = response.json()
    assert body["trace_id"] == "rid-1"
    assert "secret" not in response.text


async def test_every_response_carries_security_headers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await ok(send)

    async with client(GatewayMiddleware(app, max_body=1024, max_in_flight=8)) as http:
        response = await http.get("/products")
        docs = await http.get("/docs")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers
    assert "content-security-policy" not in docs.headers  # Swagger UI needs its scripts


async def test_hsts_only_over_https_and_route_cache_policy_is_kept() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    gateway = GatewayMiddleware(app, max_body=1024, max_in_flight=8, https=True)
    async with client(gateway) as http:
        response = await http.get("/products/X")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers.get_list("cache-control") == ["no-cache"]
