"""Migrations, error translation and the local stack's PostgreSQL/Redis lifecycle."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from cluster import bootstrap
from cluster.localstack import LocalStack
from storage.connections import ConnectionConfig, Connections, ping_database, ping_redis
from storage.errors import StorageUnavailableError
from storage.migrate import alembic_config
from storage.products import SqlUnitOfWorkFactory
from tests.contracts.product_repository import product


async def test_migrations_are_at_head_and_rerunnable(
    stack: LocalStack, connections: Connections
) -> None:
    bootstrap.migrate_database(stack)  # a second upgrade is a no-op
    async with connections.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        columns = (
            (
                await conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_name='products'"
                    )
                )
            )
            .scalars()
            .all()
        )
    head = ScriptDirectory.from_config(alembic_config(stack.database_url)).get_current_head()
    assert version == head
    assert {"sku", "available", "reserved", "partition", "version"} <= set(columns)


async def test_check_constraints_refuse_negative_stock(connections: Connections) -> None:
    from storage.errors import StorageError

    with pytest.raises(StorageError):
        async with SqlUnitOfWorkFactory(connections.engine)() as tx:
            await tx.products.add(product("NEG-STOCK-1", available=-1))
            await tx.commit()


async def test_unreachable_database_is_a_retryable_storage_error() -> None:
    dead = Connections(
        ConnectionConfig(
            "postgresql+psycopg://x:y@127.0.0.1:1/none",
            "redis://127.0.0.1:1/0",
            connect_timeout_s=1,
        )
    )
    with pytest.raises(StorageUnavailableError) as info:
        await ping_database(dead)
    assert info.value.retryable
    with pytest.raises(StorageUnavailableError):
        await ping_redis(dead)
    await dead.close()


def test_the_server_runs_with_the_configured_connection_limit(stack: LocalStack) -> None:
    import psycopg

    url = stack.database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        limit = conn.execute("SHOW max_connections").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
    assert limit == (str(stack.settings.pg_max_connections),)
    assert listen == ("127.0.0.1",)


async def test_restarting_postgres_and_redis_keeps_data(
    stack: LocalStack, connections: Connections
) -> None:
    async with SqlUnitOfWorkFactory(connections.engine)() as tx:
        await tx.products.add(product("KEEP-ME-1"))
        await tx.commit()
    await connections.redis.set("shoal:test:durable", "1")
    stack.start_data()  # a second start while running changes nothing
    assert stack.running() == {"postgres": True, "redis": True, "ray": stack.ray.running()}
    stack.redis.stop()
    stack.postgres.stop()
    assert not stack.postgres.running() and not stack.redis.running()
    stack.start_data()
    await connections.engine.dispose()  # the old pool's connections died with the server
    async with SqlUnitOfWorkFactory(connections.engine)() as tx:
        assert await tx.products.get("KEEP-ME-1") is not None
    assert await connections.redis.get("shoal:test:durable") == b"1"  # AOF kept it
