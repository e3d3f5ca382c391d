from __future__ import annotations

import pytest

from storage.connections import Connections
from storage.products import SqlUnitOfWorkFactory
from tests.contracts.order_repositories import OrderRepositoryContract, SagaRepositoryContract


@pytest.fixture
def uow(connections: Connections) -> SqlUnitOfWorkFactory:
    return SqlUnitOfWorkFactory(connections.engine)


class TestSqlOrderRepository(OrderRepositoryContract):
    pass


class TestSqlSagaRepository(SagaRepositoryContract):
    pass
