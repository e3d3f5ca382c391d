"""Connection settings and the per-process engine and Redis client built from them.

A :class:`Connections` object is what the composition root hands to actors and replicas:
it pickles as plain configuration and opens nothing until a process first asks for an
engine or a client, so no connection is ever made at import time or shipped between
processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage._translate import translated
from storage.errors import ConnectionBudgetError


@dataclass(frozen=True, slots=True)
class PoolBudget:
    """How many PostgreSQL connections each kind of process may hold.

    Attributes:
        pool_size: connections kept open per process.
        max_overflow: extra connections a process may open under load.
        processes: the largest number of processes that open a pool at once.
        reserved: connections kept free for operators, migrations and the CLI.
    """

    pool_size: int
    max_overflow: int
    processes: int
    reserved: int

    @property
    def peak(self) -> int:
        """The most connections all processes together can hold."""
        return self.processes * (self.pool_size + self.max_overflow) + self.reserved

    def check(self, max_connections: int) -> None:
        """Raise when the pools could exceed the server's ``max_connections``.

        Raises:
            ConnectionBudgetError: the budget does not fit.
        """
        if self.peak > max_connections:
            raise ConnectionBudgetError(
                f"{self.processes} processes x (pool {self.pool_size} + overflow "
                f"{self.max_overflow}) + {self.reserved} reserved = {self.peak} connections, "
                f"over the server's max_connections of {max_connections}"
            )


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Where the data lives and how much of it a process may hold.

    Attributes:
        database_url: SQLAlchemy URL (``postgresql+psycopg://...``).
        redis_url: ``redis://`` URL.
        pool_size: connections kept per process.
        max_overflow: extra connections per process under load.
        statement_timeout_ms: PostgreSQL statement timeout for every session.
        connect_timeout_s: how long to wait for a connection to open.
        pre_ping: test each connection with a round trip when it is taken from the pool, so
            that one broken by a PostgreSQL restart is replaced unseen. Without it, the first
            statement on such a connection fails with a retryable error (and the pool drops
            every connection older than the failure): for callers that retry anyway and
            would otherwise pay the round trip on every transaction.
    """

    database_url: str
    redis_url: str
    pool_size: int = 4
    max_overflow: int = 4
    statement_timeout_ms: int = 5000
    connect_timeout_s: float = 3.0
    pre_ping: bool = True


class Connections:
    """Lazily opened, per-process engine and Redis client for one :class:`ConnectionConfig`."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._engine: AsyncEngine | None = None
        self._redis: aioredis.Redis | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    @property
    def engine(self) -> AsyncEngine:
        """The process's async SQLAlchemy engine (psycopg 3), created on first use."""
        if self._engine is None:
            cfg = self.config
            self._engine = create_async_engine(
                cfg.database_url,
                pool_size=cfg.pool_size,
                max_overflow=cfg.max_overflow,
                pool_pre_ping=cfg.pre_ping,
                pool_recycle=1800,
                connect_args={
                    "connect_timeout": max(1, round(cfg.connect_timeout_s)),
                    "options": f"-c statement_timeout={cfg.statement_timeout_ms}",
                },
            )
        return self._engine

    @property
    def redis(self) -> aioredis.Redis:
        """The process's Redis client, created on first use."""
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self.config.redis_url,
                socket_timeout=self.config.connect_timeout_s,
                socket_connect_timeout=self.config.connect_timeout_s,
                health_check_interval=30,
                # A connection dropped by a Redis restart is re-opened once, quickly.
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=2),
                retry_on_error=[RedisConnectionError],
            )
        return self._redis

    async def close(self) -> None:
        """Release the pool and the Redis connections."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


async def ping_database(conn: Connections) -> None:
    """Run ``SELECT 1``; raises a storage error when PostgreSQL cannot answer."""
    async with translated(), conn.engine.connect() as c:
        await c.execute(text("SELECT 1"))


async def ping_redis(conn: Connections) -> None:
    """``PING`` Redis; raises a storage error when it cannot answer."""
    async with translated():
        await conn.redis.ping()
