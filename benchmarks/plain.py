"""The plain write baseline: the gateway, plus writes that are one ``UPDATE`` each.

:class:`PlainWriteIngress` is :class:`serve.deployment.GatewayIngress` (same app, same
middleware, same authenticator and rate limit) with two routes added that skip the shards:

- ``POST /bench-plain/restock/{sku}`` ``{"quantity": n}`` (permission ``inventory:restock``)
- ``POST /bench-plain/credit/{user_id}`` ``{"amount": n, "reason": "..."}``
  (permission ``wallets:credit``)

Each runs one ``UPDATE ... RETURNING`` in its own transaction on the replica's engine: no
idempotency record, no ledger entries, no cache invalidation, no actor hop. It is what a
write costs without the single-writer shards, so the shards' figures are read against it.
It is deployed as its own Serve app with the gateway's options and configuration.

Import this module only after :func:`cluster.localstack.prepare_local_driver` (it imports
``ray``).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and
# this module's code is shipped by value, so names in strings would not resolve.
import sys
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from ray import cloudpickle, serve
from sqlalchemy import TextClause, text

from actors.inventory.errors import UnknownProductError
from actors.payments.errors import UnknownWalletError
from cluster import bootstrap
from cluster.localstack import LocalStack
from cluster.settings import Settings
from serve._auth import Principal, Require
from serve.deployment import GatewayIngress
from serve.schemas import BalanceOut, CreditIn, RestockIn, SkuPath, StockOut

APP_NAME = "bench-plain"
ROUTE_PREFIX = "/bench-plain"
_RESTOCK = text("UPDATE products SET available = available + :q WHERE sku = :s RETURNING available")
_CREDIT = text("UPDATE wallets SET balance = balance + :a WHERE user_id = :u RETURNING balance")
Restocker = Annotated[Principal, Depends(Require("inventory:restock"))]
Crediter = Annotated[Principal, Depends(Require("wallets:credit"))]


class PlainWriteIngress(GatewayIngress):
    """A gateway replica with the plain write routes added."""

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = super().__serve_build_asgi_app__()
        engine = self._conn.engine

        async def update(statement: TextClause, params: dict[str, Any]) -> int | None:
            async with engine.begin() as conn:
                value: int | None = (await conn.execute(statement, params)).scalar_one_or_none()
            return value

        @app.post("/restock/{sku}", tags=["bench"], response_model=StockOut)
        async def restock(caller: Restocker, sku: SkuPath, body: RestockIn) -> JSONResponse:
            available = await update(_RESTOCK, {"q": body.quantity, "s": sku})
            if available is None:
                raise UnknownProductError(sku)
            return JSONResponse({"available": available})

        @app.post("/credit/{user_id}", tags=["bench"], response_model=BalanceOut)
        async def credit(caller: Crediter, user_id: UUID, body: CreditIn) -> JSONResponse:
            balance = await update(_CREDIT, {"a": body.amount, "u": user_id})
            if balance is None:
                raise UnknownWalletError(str(user_id))
            return JSONResponse({"balance": balance})

        return app


def deploy_plain(settings: Settings, stack: LocalStack) -> None:
    """Deploy the plain baseline next to the gateway (Serve must be started), leave it serving."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
    options = bootstrap.gateway_options(settings)
    options["ray_actor_options"]["runtime_env"] = bootstrap.runtime_env(stack)
    plain = serve.deployment(name=APP_NAME, **options)(PlainWriteIngress)
    app = plain.bind(bootstrap.gateway_config(settings, stack))
    serve.run(app, name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)
