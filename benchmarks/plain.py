"""The plain write baseline: the gateway, plus writes that are one ``UPDATE`` each.

:class:`PlainWriteIngress` is :class:`serve.deployment.GatewayIngress` (same app, same
middleware, same authenticator and rate limit) with two routes added that skip the shards:

- ``POST /bench-plain/restock/{sku}`` ``{"quantity": n}`` (permission ``inventory:restock``)
- ``POST /bench-plain/credit/{user_id}`` ``{"amount": n, "reason": "..."}``
  (permission ``wallets:credit``)
- ``POST /bench-plain/order`` ``{"items": [{"sku", "quantity"}, ...]}`` (permission
  ``orders:create``): PlaceOrder's three steps in one transaction. Every line takes its
  units (``available >= q``), the caller's wallet pays the total (``balance >= total``),
  and the order is inserted CONFIRMED; 201 with ``{id, status, total, currency}``, or 409
  out of stock / insufficient funds with nothing changed. Lines are taken in SKU order, so
  that two orders of the same SKUs cannot deadlock.

Restocks and credits run one ``UPDATE ... RETURNING`` in their own transaction on the
replica's engine. None of the routes keeps an idempotency record, ledger entries, a saga
log or outbox events, invalidates a cache or calls an actor. It is what a write costs
without the single-writer shards and the saga, so shoal's figures are read against it.
It is deployed as its own Serve app with the gateway's options and configuration.

Import this module only after :func:`cluster.localstack.prepare_local_driver` (it imports
``ray``).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and
# this module's code is shipped by value, so names in strings would not resolve.
import json
import sys
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from ray import cloudpickle, serve
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from actors.inventory.errors import OutOfStockError, UnknownProductError
from actors.payments.errors import InsufficientFundsError, UnknownWalletError
from cluster import bootstrap
from cluster.localstack import LocalStack
from cluster.settings import Settings
from serve._auth import Principal, Require
from serve.deployment import GatewayIngress
from serve.schemas import BalanceOut, CreditIn, OrderAccepted, OrderIn, RestockIn, SkuPath, StockOut
from storage import telemetry  # the module, not its ContextVar: this code ships by value

APP_NAME = "bench-plain"
ROUTE_PREFIX = "/bench-plain"
_RESTOCK = text("UPDATE products SET available = available + :q WHERE sku = :s RETURNING available")
_CREDIT = text("UPDATE wallets SET balance = balance + :a WHERE user_id = :u RETURNING balance")
Restocker = Annotated[Principal, Depends(Require("inventory:restock"))]
Crediter = Annotated[Principal, Depends(Require("wallets:credit"))]
Placer = Annotated[Principal, Depends(Require("orders:create"))]
_TAKE = text(
    "UPDATE products SET available = available - :q WHERE sku = :s AND available >= :q "
    "RETURNING price"
)
_PAY = text(
    "UPDATE wallets SET balance = balance - :t WHERE user_id = :u AND balance >= :t "
    "RETURNING balance"
)
_CONFIRM = text(
    "INSERT INTO orders (id, user_id, status, items, total, currency, trace_id) "
    "VALUES (:id, :u, 'CONFIRMED', :items, :total, :currency, :trace)"
)


async def place_order(
    conn: AsyncConnection, user_id: UUID, items: list[tuple[str, int]], currency: str
) -> dict[str, Any]:
    """Take the units, debit the total and insert the CONFIRMED order, in ``conn``'s transaction.

    Raises:
        OutOfStockError: a line's SKU has fewer units (or does not exist).
        InsufficientFundsError: the wallet holds less than the total (or does not exist).
    """
    lines = []
    for sku, quantity in sorted(items):
        price = (await conn.execute(_TAKE, {"q": quantity, "s": sku})).scalar_one_or_none()
        if price is None:
            raise OutOfStockError(sku, 0, quantity)
        lines.append({"sku": sku, "quantity": quantity, "price": price})
    total = sum(line["price"] * line["quantity"] for line in lines)
    if (await conn.execute(_PAY, {"t": total, "u": user_id})).scalar_one_or_none() is None:
        raise InsufficientFundsError(str(user_id), 0, total)
    order_id = uuid4()
    row = {"id": order_id, "u": user_id, "items": json.dumps(lines), "total": total}
    await conn.execute(
        _CONFIRM, {**row, "currency": currency, "trace": telemetry.trace_id_var.get()}
    )
    return {"id": str(order_id), "status": "CONFIRMED", "total": total, "currency": currency}


class PlainWriteIngress(GatewayIngress):
    """A gateway replica with the plain write routes added."""

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = super().__serve_build_asgi_app__()
        engine = self._conn.engine
        currency = self._config.currency

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

        @app.post("/order", tags=["bench"], status_code=201, response_model=OrderAccepted)
        async def order(caller: Placer, body: OrderIn) -> JSONResponse:
            items = [(line.sku, line.quantity) for line in body.items]
            async with engine.begin() as conn:
                placed = await place_order(conn, caller.user_id, items, currency)
            return JSONResponse(placed, 201)

        return app


def deploy_plain(settings: Settings, stack: LocalStack) -> None:
    """Deploy the plain baseline next to the gateway (Serve must be started), leave it serving."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
    options = bootstrap.gateway_options(settings)
    options["ray_actor_options"]["runtime_env"] = bootstrap.runtime_env(stack)
    plain = serve.deployment(name=APP_NAME, **options)(PlainWriteIngress)
    app = plain.bind(bootstrap.gateway_config(settings, stack))
    serve.run(app, name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)
