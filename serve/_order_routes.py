"""Orders and sagas: adapters that validate, send to the owning orchestrator, read, answer.

Placing and cancelling go to the orchestrator shard that owns the order (batched like any
shard write). Reads come straight from PostgreSQL; ``?wait=`` asks the owner to answer when
the order's sagas have finished, and reads again (if the owner cannot be asked, it polls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response

from actors._ops import WrongShardError
from actors.auth.model import Rbac
from actors.router import ShardRouter
from sagas.definition import SAGA_STATUSES
from sagas.errors import UnknownOrderError, UnknownSagaError
from sagas.orchestrator import CancelOrder, PlaceOrder
from serve._auth import Principal, Require
from serve._writes import operation, required, write
from serve.schemas import (
    CancelAccepted,
    Cursor,
    IdempotencyKey,
    Limit,
    OrderAccepted,
    OrderIn,
    OrderOut,
    OrderPage,
    OrderSummaryOut,
    SagaOut,
    SagaPage,
    decode_audit_cursor,
    keyset_page,
    parse_id,
)
from storage.ports import UnitOfWorkFactory
from storage.records import OrderRecord, SagaRecord

Placer = Annotated[Principal, Depends(Require("orders:create"))]
OwnReader = Annotated[Principal, Depends(Require("orders:read:own"))]
OwnCanceller = Annotated[Principal, Depends(Require("orders:cancel:own"))]
SagaReader = Annotated[Principal, Depends(Require("sagas:read"))]
SagaManager = Annotated[Principal, Depends(Require("sagas:manage"))]
IdPath = Annotated[str, Path(max_length=64, description="the id")]
Wait = Annotated[float, Query(ge=0, le=30, description="seconds to hold the answer")]
StatusFilter = Annotated[str | None, Query(pattern=f"^({'|'.join(SAGA_STATUSES)})$")]
_UNSETTLED = ("PENDING", "CANCELLING")
_POLL_S = 0.1


def order_routes(app: FastAPI, uow: UnitOfWorkFactory, orchestrators: ShardRouter) -> None:
    """Add the order and saga routes: writes through ``orchestrators``, reads from ``uow``."""

    async def load(order_id: UUID, caller: Principal) -> tuple[OrderRecord, list[SagaRecord]]:
        async with uow() as tx:
            order = await tx.orders.get(order_id)
            sagas = await tx.sagas.of_order(order_id) if order is not None else []
        mine = order is not None and order.user_id == caller.user_id
        if order is None or not (mine or Rbac.allows(caller.permissions, "orders:read")):
            raise UnknownOrderError(str(order_id))  # another user's order: as if it did not exist
        return order, sagas

    async def settled(order_id: UUID, caller: Principal, wait_s: float) -> OrderOut:
        order, sagas = await load(order_id, caller)
        deadline = time.monotonic() + wait_s
        while order.status in _UNSETTLED and (left := deadline - time.monotonic()) > 0:
            await _wait_for_owner(orchestrators, order_id, left)
            order, sagas = await load(order_id, caller)
        return OrderOut.of(order, sagas)

    @app.post("/orders", tags=["orders"], status_code=202, response_model=OrderAccepted)
    async def place(
        request: Request, caller: Placer, body: OrderIn, key: IdempotencyKey = None
    ) -> Response:
        op = operation(request, caller, required(key), body.model_dump())
        items = tuple((line.sku, line.quantity) for line in body.items)
        command = PlaceOrder(op, caller.user_id, items)
        location = {"Location": f"/orders/{command.order_id}"}
        return await write(
            orchestrators, str(command.order_id), command, dict, status_code=202, headers=location
        )

    @app.get("/orders", tags=["orders"])
    async def my_orders(caller: OwnReader, limit: Limit = 20, cursor: Cursor = None) -> OrderPage:
        after = decode_audit_cursor(cursor)
        async with uow() as tx:
            found = await tx.order_views.of_user(caller.user_id, after, limit + 1)
        page, next_cursor = keyset_page(found, limit, lambda v: (v.created_at, v.id))
        return OrderPage(items=[OrderSummaryOut.of(v) for v in page], next_cursor=next_cursor)

    @app.get("/orders/{order_id}", tags=["orders"])
    async def get_order(caller: OwnReader, order_id: IdPath, wait: Wait = 0) -> OrderOut:
        return await settled(parse_id(order_id, UnknownOrderError), caller, wait)

    @app.post(
        "/orders/{order_id}/cancel", tags=["orders"], status_code=202, response_model=CancelAccepted
    )
    async def cancel(
        request: Request, caller: OwnCanceller, order_id: IdPath, key: IdempotencyKey = None
    ) -> Response:
        target = parse_id(order_id, UnknownOrderError)
        op = operation(request, caller, key, None)
        anyone = Rbac.allows(caller.permissions, "orders:cancel")
        command = CancelOrder(op, target, caller.user_id, any_owner=anyone)
        return await write(orchestrators, str(target), command, dict, status_code=202)


def saga_routes(app: FastAPI, uow: UnitOfWorkFactory, orchestrators: ShardRouter) -> None:
    """Add the operators' saga routes: reads from ``uow``, commands to the owning shard."""

    @app.get("/admin/sagas", tags=["operators"])
    async def list_sagas(
        _: SagaReader, status: StatusFilter = None, limit: Limit = 20, cursor: Cursor = None
    ) -> SagaPage:
        after = decode_audit_cursor(cursor)
        async with uow() as tx:
            found = await tx.sagas.list_page(status, after, limit + 1)
        page, next_cursor = keyset_page(found, limit, lambda s: (s.updated_at, s.id))
        return SagaPage(items=[SagaOut.of(s) for s in page], next_cursor=next_cursor)

    async def saga(saga_id: UUID) -> SagaRecord:
        async with uow() as tx:
            found = await tx.sagas.get(saga_id)
        if found is None:
            raise UnknownSagaError(str(saga_id))
        return found

    @app.get("/admin/sagas/{saga_id}", tags=["operators"])
    async def show_saga(_: SagaReader, saga_id: IdPath) -> SagaOut:
        found = await saga(parse_id(saga_id, UnknownSagaError))
        async with uow() as tx:
            log = await tx.sagas.log_of(found.id)
        return SagaOut.of(found, log)

    async def command(saga_id: str, method: str) -> SagaOut:
        found = await saga(parse_id(saga_id, UnknownSagaError))
        key = str(found.order_id)
        try:
            owner = await orchestrators.owner(key)
        except ValueError:  # no such actor right now (starting, or a handoff): retryable
            raise WrongShardError(key, -1, orchestrators.partitioning.shards) from None
        changed: SagaRecord = await getattr(owner, method).remote(found.id)
        return SagaOut.of(changed)

    @app.post("/admin/sagas/{saga_id}/retry", tags=["operators"])
    async def retry_saga(_: SagaManager, saga_id: IdPath) -> SagaOut:
        return await command(saga_id, "retry")

    @app.post("/admin/sagas/{saga_id}/abort", tags=["operators"])
    async def abort_saga(_: SagaManager, saga_id: IdPath) -> SagaOut:
        return await command(saga_id, "abort")


async def _wait_for_owner(orchestrators: ShardRouter, order_id: UUID, seconds: float) -> None:
    """Wait until the owner says the order's sagas finished (or a short while, if it cannot)."""
    started = time.monotonic()
    try:
        owner: Any = await orchestrators.owner(str(order_id))
        reply: Awaitable[None] = owner.wait.remote([order_id], seconds)
        await asyncio.wait_for(reply, seconds + 1)
    except Exception:  # noqa: S110 - the owner is restarting or moved: read again shortly
        pass
    pause = _POLL_S - (time.monotonic() - started)  # never spin on an owner that has no saga
    if pause > 0:
        await asyncio.sleep(min(pause, seconds))
