"""The gateway app over fakes, for tests that never reach a database or Redis."""

from __future__ import annotations

from datetime import timedelta

import redis.asyncio as aioredis
from fastapi import FastAPI

from actors.auth.model import Rbac
from serve._auth import Authenticator
from serve.app import GatewayDeps, create_app
from storage.cache import CachePolicy, RedisProductCache
from storage.ratelimit import RateSpec, RedisRateLimiter
from storage.session_cache import RedisSessionCache
from tests.fakes import FakeUnitOfWorkFactory


async def _no_actor() -> object:
    raise AssertionError("these tests never call an actor")


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
        checks={},
        cors_origins=cors_origins,
    )
    return create_app(deps)
