"""The gateway app over fakes, for tests that never reach a database or Redis."""

from __future__ import annotations

from datetime import timedelta

import redis.asyncio as aioredis
from fastapi import FastAPI

from actors.auth.model import Rbac
from actors.placement import Partitioning
from actors.router import ShardRouter
from serve._auth import Authenticator
from serve.app import GatewayDeps, create_app
from storage.cache import CachePolicy, RedisProductCache
from storage.ratelimit import RateSpec, RedisRateLimiter
from storage.session_cache import RedisSessionCache
from tests.fakes import FakeUnitOfWorkFactory


async def _no_actor() -> object:
    raise AssertionError("these tests never call an actor")


async def _no_shard(name: str) -> object:
    raise AssertionError(f"these tests never call a shard ({name})")


def _router(kind: str) -> ShardRouter:
    def name_of(shard: int) -> str:
        return f"{kind}-shard-{shard}"

    def forget(name: str) -> None:
        raise AssertionError(f"these tests never call a shard ({name})")

    return ShardRouter(kind, name_of, Partitioning(8, 2), _no_shard, forget)


def offline_app(cors_origins: tuple[str, ...] = ()) -> FastAPI:
    uow = FakeUnitOfWorkFactory()
    client = aioredis.Redis()  # never connected by these tests
    authenticator = Authenticator(
        uow,
        RedisSessionCache(client, 3600),
        Rbac(),
        limiter=RedisRateLimiter(client),
        limits={"default": RateSpec(20, 100), "auth": RateSpec(500, 20)},
        issuer="shoal",
        audience="shoal-api",
        key_grace=timedelta(minutes=16),
    )
    deps = GatewayDeps(
        uow=uow,
        cache=RedisProductCache(client, CachePolicy()),
        authenticator=authenticator,
        auth_actor=_no_actor,
        inventory=_router("inventory"),
        wallets=_router("wallets"),
        orders=_router("orders"),
        checks={},
        cors_origins=cors_origins,
    )
    return create_app(deps)
