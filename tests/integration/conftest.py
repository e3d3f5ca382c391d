from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from cluster.localstack import LocalStack
from storage import migrate
from storage.connections import ConnectionConfig, Connections

BUS_DATABASE = "shoal_bus_test"


@pytest.fixture(scope="session")
async def connections(stack: LocalStack) -> AsyncIterator[Connections]:
    conn = Connections(ConnectionConfig(stack.database_url, stack.redis_url))
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def isolated(stack: LocalStack) -> AsyncIterator[Connections]:
    """A database and a Redis database of their own, on the same servers.

    The event-side tests empty the outbox and flush Redis: the session's cluster (its relay
    and workers) must neither see nor disturb what they do.
    """
    server = sa.engine.make_url(stack.database_url)
    admin = sa.create_engine(
        server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as sql:
        sql.execute(sa.text(f"DROP DATABASE IF EXISTS {BUS_DATABASE}"))
        sql.execute(sa.text(f"CREATE DATABASE {BUS_DATABASE}"))
    admin.dispose()
    url = server.set(database=BUS_DATABASE).render_as_string(hide_password=False)
    migrate.upgrade(url)
    conn = Connections(ConnectionConfig(url, stack.redis_url.rsplit("/", 1)[0] + "/1"))
    yield conn
    await conn.close()
