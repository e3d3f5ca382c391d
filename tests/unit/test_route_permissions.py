"""Deny by default: every route declares its permission, and an undeclared one stops the app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from serve._auth import PUBLIC, declared_permission
from serve.app import _refuse_undeclared
from tests.unit.app_factory import offline_app

# The contract's public routes (API.md); everything else needs a token.
PUBLIC_ROUTES = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/.well-known/jwks.json",
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/mfa/verify",
}


def test_every_route_declares_a_permission_and_only_contract_routes_are_public() -> None:
    routes = [r for r in offline_app().routes if isinstance(r, APIRoute)]
    assert routes
    declared = {(m, r.path): declared_permission(r) for r in routes for m in r.methods or ()}
    assert None not in declared.values(), declared
    assert {path for (_, path), p in declared.items() if p == PUBLIC} == PUBLIC_ROUTES
    assert declared["GET", "/products/{sku}"] == "products:read"
    assert declared["POST", "/products"] == "products:write"
    assert declared["PATCH", "/products/{sku}"] == "products:write"
    assert declared["POST", "/products/{sku}/restock"] == "inventory:restock"
    assert declared["GET", "/wallets/me"] == "wallets:read:own"
    assert declared["POST", "/wallets/{user_id}/credit"] == "wallets:credit"


def test_a_route_without_a_permission_stops_the_app() -> None:
    app = FastAPI()

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="/forgotten declares no permission"):
        _refuse_undeclared(app)
