"""Wallets: reads straight from PostgreSQL, credits through the owning shard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import Response

from actors.auth.model import Rbac
from actors.payments.errors import UnknownWalletError
from actors.payments.model import MoneyCommand
from actors.router import ShardRouter
from serve._auth import Principal, Require
from serve._writes import operation, required, write
from serve.schemas import (
    BalanceOut,
    CreditIn,
    Cursor,
    IdempotencyKey,
    LedgerEntryOut,
    LedgerPage,
    Limit,
    WalletOut,
    decode_position,
    encode_position,
    parse_id,
)
from storage.ports import UnitOfWorkFactory

OwnReader = Annotated[Principal, Depends(Require("wallets:read:own"))]
Crediter = Annotated[Principal, Depends(Require("wallets:credit"))]
WalletIdPath = Annotated[str, Path(max_length=64, description="the wallet's user id")]


def _balance(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"balance": value["balance"]}


def wallet_routes(app: FastAPI, uow: UnitOfWorkFactory, shards: ShardRouter, currency: str) -> None:
    """Add the wallet routes: reads from ``uow``, credits through ``shards``."""

    async def read(user_id: UUID) -> WalletOut:
        async with uow() as tx:
            wallet = await tx.wallets.get(user_id)
        if wallet is None:
            raise UnknownWalletError(str(user_id))
        return WalletOut(
            user_id=wallet.user_id,
            balance=wallet.balance,
            currency=currency,
            updated_at=wallet.updated_at,
        )

    @app.get("/wallets/me", tags=["payments"])
    async def my_wallet(caller: OwnReader) -> WalletOut:
        return await read(caller.user_id)

    @app.get("/wallets/me/ledger", tags=["payments"])
    async def my_ledger(caller: OwnReader, limit: Limit = 20, cursor: Cursor = None) -> LedgerPage:
        before = decode_position(cursor)
        async with uow() as tx:
            entries, more = await tx.ledger.of_wallet(caller.user_id, before, limit)
        next_cursor = None if more is None else encode_position(more)
        return LedgerPage(items=[LedgerEntryOut.of(e) for e in entries], next_cursor=next_cursor)

    @app.get("/wallets/{user_id}", tags=["payments"])
    async def wallet(caller: OwnReader, user_id: WalletIdPath) -> WalletOut:
        target = parse_id(user_id, UnknownWalletError)
        if target != caller.user_id and not Rbac.allows(caller.permissions, "wallets:read"):
            raise UnknownWalletError(user_id)  # another user's wallet: as if it did not exist
        return await read(target)

    @app.post("/wallets/{user_id}/credit", tags=["payments"], response_model=BalanceOut)
    async def credit(
        request: Request,
        caller: Crediter,
        user_id: WalletIdPath,
        body: CreditIn,
        key: IdempotencyKey = None,
    ) -> Response:
        target = parse_id(user_id, UnknownWalletError)
        op = operation(request, caller, required(key), body.model_dump())
        command = MoneyCommand(op, target, "credit", body.amount, body.reason)
        return await write(shards, str(target), command, _balance)
