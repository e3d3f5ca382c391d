"""Catalogue and stock writes: adapters that validate, send to the owning shard, answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from actors.inventory.errors import InvalidProductError
from actors.inventory.model import CreateProduct, NewProduct, StockCommand, UpdateProduct
from actors.router import ShardRouter
from serve._auth import Principal, Require
from serve._writes import operation, write
from serve.schemas import (
    IdempotencyKey,
    ProductIn,
    ProductOut,
    ProductPatchIn,
    RestockIn,
    SkuPath,
    StockOut,
)

CatalogWriter = Annotated[Principal, Depends(Require("products:write"))]
Restocker = Annotated[Principal, Depends(Require("inventory:restock"))]


def _stock(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"available": value["available"]}


def inventory_routes(app: FastAPI, shards: ShardRouter, currency: str) -> None:
    """Add the catalogue and stock writes, sent to ``shards``; prices are in ``currency``."""

    @app.post("/products", tags=["inventory"], status_code=201, response_model=ProductOut)
    async def create_product(
        request: Request, caller: CatalogWriter, body: ProductIn, key: IdempotencyKey = None
    ) -> Response:
        if body.currency not in {None, currency}:
            raise InvalidProductError("currency", f"this deployment's currency is {currency}")
        product = NewProduct(body.sku, body.name, body.price, currency, body.initial_stock)
        op = operation(request, caller, key, body.model_dump())
        location = {"Location": f"/products/{body.sku}"}
        command = CreateProduct(op, product)
        return await write(shards, body.sku, command, dict, status_code=201, headers=location)

    @app.patch("/products/{sku}", tags=["inventory"], response_model=ProductOut)
    async def update_product(
        request: Request,
        caller: CatalogWriter,
        sku: SkuPath,
        body: ProductPatchIn,
        key: IdempotencyKey = None,
    ) -> Response:
        op = operation(request, caller, key, body.model_dump())
        return await write(shards, sku, UpdateProduct(op, sku, body.name, body.price), dict)

    @app.post("/products/{sku}/restock", tags=["inventory"], response_model=StockOut)
    async def restock(
        request: Request,
        caller: Restocker,
        sku: SkuPath,
        body: RestockIn,
        key: IdempotencyKey = None,
    ) -> Response:
        op = operation(request, caller, key, body.model_dump())
        return await write(shards, sku, StockCommand(op, sku, "restock", body.quantity), _stock)
