from __future__ import annotations

import pytest

from storage.connections import Connections
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
    pass
