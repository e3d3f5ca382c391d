from __future__ import annotations

import httpx

from tests.unit.app_factory import offline_app


def app_with(origins: tuple[str, ...]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=offline_app(origins))
    return httpx.AsyncClient(transport=transport, base_url="http://gw")


def preflight(origin: str) -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": "GET"}


async def test_cors_allows_only_the_configured_origins() -> None:
    async with app_with(("https://app.example",)) as http:
        allowed = await http.options("/products", headers=preflight("https://app.example"))
        refused = await http.options("/products", headers=preflight("https://evil.example"))
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in refused.headers


async def test_cors_is_off_unless_configured() -> None:
    async with app_with(()) as http:
        response = await http.options("/products", headers=preflight("https://app.example"))
    assert "access-control-allow-origin" not in response.headers
