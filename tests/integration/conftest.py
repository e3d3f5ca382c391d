from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cluster.localstack import LocalStack
from storage.connections import ConnectionConfig, Connections


@pytest.fixture(scope="session")
async def connections(stack: LocalStack) -> AsyncIterator[Connections]:
    conn = Connections(ConnectionConfig(stack.database_url, stack.redis_url))
    yield conn
    await conn.close()
