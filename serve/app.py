"""The gateway's FastAPI application: routes are adapters that read, call a port, map errors."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from actors.inventory.errors import UnknownProductError
from actors.inventory.model import SKU_PATTERN
from actors.router import ShardRouter
from serve._admin_routes import admin_routes
from serve._auth import PUBLIC, Authenticator, Require, declared_permission
from serve._auth_routes import auth_routes
from serve._event_routes import event_routes
from serve._inventory_routes import inventory_routes
from serve._middleware import GatewayMiddleware
from serve._order_routes import order_routes, saga_routes
from serve._tracing import RequestIdMiddleware
from serve._wallet_routes import wallet_routes
from serve.errors import install_error_handlers
from serve.schemas import (
    Cursor,
    IfNoneMatch,
    Limit,
    ProductOut,
    ProductPage,
    ReadinessOut,
    SkuPath,
    decode_cursor,
    encode_cursor,
)
from storage.cache import CachedBody, RedisProductCache
from storage.ports import UnitOfWorkFactory
from storage.telemetry import node_metrics_text

ReadinessCheck = Callable[[], Awaitable[object]]
Anyone = Depends(Require(PUBLIC))
Reader = Depends(Require("products:read"))


def _product_entry(request: Request) -> str | None:
    """The cache key a product read will need, fetched with the session check."""
    sku = request.path_params.get("sku", "")
    return RedisProductCache.product_key(sku) if SKU_PATTERN.fullmatch(sku) else None


ProductReader = Depends(Require("products:read", prefetch=_product_entry))
_PROM_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class GatewayDeps:
    """What the routes use, built once per replica by the deployment.

    Attributes:
        uow: makes a read transaction on PostgreSQL (the source of truth).
        cache: cache-aside reads of products.
        authenticator: verifies access tokens, sessions and roles in the replica.
        auth_actor: returns the auth actor's handle (logins, refreshes, session changes).
        inventory: sends catalogue and stock writes to the owning inventory shards.
        wallets: sends money movements to the owning wallet shards.
        orders: sends orders and cancellations to the owning orchestrator shards.
        currency: the deployment's one currency.
        checks: named readiness checks; each raises or times out when unhealthy.
        max_body: largest request body accepted, in bytes.
        max_in_flight: requests this replica works on at once before it sheds new ones.
        trusted_proxies: peers whose ``X-Forwarded-For`` names the client.
        cors_origins: browser origins allowed to call the API (none: no CORS headers).
        https: whether clients reach the gateway over TLS (adds HSTS).
        check_timeout_s: how long one readiness check may take.
    """

    uow: UnitOfWorkFactory
    cache: RedisProductCache
    authenticator: Authenticator
    auth_actor: Callable[[], Awaitable[Any]]
    inventory: ShardRouter
    wallets: ShardRouter
    orders: ShardRouter
    checks: Mapping[str, ReadinessCheck]
    currency: str = "USD"
    max_body: int = 64 * 1024
    max_in_flight: int = 48
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1/32"})
    cors_origins: tuple[str, ...] = ()
    https: bool = False
    check_timeout_s: float = 2.0


def _cached_response(entry: CachedBody, if_none_match: str | None) -> Response:
    headers = {"ETag": entry.etag, "Cache-Control": "no-cache"}
    if if_none_match and entry.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(entry.body, media_type="application/json", headers=headers)


def create_app(deps: GatewayDeps) -> FastAPI:
    """Build the gateway app around ``deps``."""
    app = FastAPI(title="shoal", version="0.1.0")
    if deps.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(deps.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "ETag", "Retry-After", "Location"],
            max_age=600,
        )
    app.add_middleware(
        GatewayMiddleware,
        max_body=deps.max_body,
        max_in_flight=deps.max_in_flight,
        https=deps.https,
    )
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.state.authenticator = deps.authenticator
    app.state.trusted_proxies = deps.trusted_proxies
    _health_routes(app, deps)
    _product_routes(app, deps)
    inventory_routes(app, deps.inventory, deps.currency)
    wallet_routes(app, deps.uow, deps.wallets, deps.currency)
    order_routes(app, deps.uow, deps.orders)
    saga_routes(app, deps.uow, deps.orders)
    auth_routes(app, deps.auth_actor)
    admin_routes(app, deps.auth_actor)
    event_routes(app, deps.uow)
    _refuse_undeclared(app)
    return app


def _refuse_undeclared(app: FastAPI) -> None:
    """Deny by default: every route must declare its permission, or the app does not start."""
    for route in app.routes:
        if isinstance(route, APIRoute) and declared_permission(route) is None:
            raise RuntimeError(f"route {route.path} declares no permission (use Require)")


def _health_routes(app: FastAPI, deps: GatewayDeps) -> None:
    async def run(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), deps.check_timeout_s)
        except Exception:
            return "fail"
        return "ok"

    @app.get("/healthz", tags=["operations"], dependencies=[Anyone])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=ReadinessOut, dependencies=[Anyone])
    async def readyz() -> JSONResponse:
        names = list(deps.checks)
        results = await asyncio.gather(*(run(deps.checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(r == "ok" for r in results)
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        headers = {} if ready else {"Retry-After": "1"}
        return JSONResponse(body, status_code=200 if ready else 503, headers=headers)

    @app.get("/metrics", tags=["operations"], response_class=Response, dependencies=[Anyone])
    async def metrics() -> Response:
        text = await asyncio.to_thread(node_metrics_text)
        return Response(text, media_type=_PROM_TEXT)


def _product_routes(app: FastAPI, deps: GatewayDeps) -> None:
    @app.get("/products", tags=["inventory"], response_model=ProductPage, dependencies=[Reader])
    async def list_products(
        limit: Limit = 20, cursor: Cursor = None, if_none_match: IfNoneMatch = None
    ) -> Response:
        after = decode_cursor(cursor)

        async def load() -> bytes:
            async with deps.uow() as uow:
                page = await uow.products.list_after(after, limit)
            items = [ProductOut.of(r) for r in page.items]
            next_cursor = None if page.next_after is None else encode_cursor(page.next_after)
            return ProductPage(items=items, next_cursor=next_cursor).model_dump_json().encode()

        return _cached_response(await deps.cache.listing(after, limit, load), if_none_match)

    @app.get(
        "/products/{sku}",
        tags=["inventory"],
        response_model=ProductOut,
        dependencies=[ProductReader],
    )
    async def get_product(
        request: Request,
        sku: SkuPath,
        if_none_match: IfNoneMatch = None,
    ) -> Response:
        async def load() -> bytes | None:
            async with deps.uow() as uow:
                record = await uow.products.get(sku)
            return None if record is None else ProductOut.of(record).model_dump_json().encode()

        prefetched = getattr(request.state, "prefetched", None)
        entry = await deps.cache.product(sku, load, prefetched)
        if entry is None:
            raise UnknownProductError(sku)
        return _cached_response(entry, if_none_match)
