from __future__ import annotations

from uuid import UUID

import pytest
from sqlalchemy import text

from storage.connections import Connections
from storage.ports import UnitOfWorkFactory
from storage.products import SqlUnitOfWorkFactory
from tests.contracts.payments_repositories import (
    LedgerRepositoryContract,
    OperationLogContract,
    WalletRepositoryContract,
)


@pytest.fixture
def uow(connections: Connections) -> SqlUnitOfWorkFactory:
    return SqlUnitOfWorkFactory(connections.engine)


class TestSqlWalletRepository(WalletRepositoryContract):
    pass


class TestSqlLedgerRepository(LedgerRepositoryContract):
    pass


class TestSqlOperationLog(OperationLogContract):
    @pytest.fixture(autouse=True)
    def _database(self, connections: Connections) -> None:
        self.connections = connections

    async def stored_events(self, uow: UnitOfWorkFactory, ids: list[UUID]) -> set[UUID]:
        query = text("SELECT id FROM outbox WHERE id = ANY(:ids)")
        async with self.connections.engine.connect() as conn:
            return set((await conn.execute(query, {"ids": ids})).scalars())
