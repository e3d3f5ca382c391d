from __future__ import annotations

import pytest

from storage.connections import Connections
from storage.products import SqlUnitOfWorkFactory
from tests.contracts.product_repository import ProductRepositoryContract


class TestSqlProductRepository(ProductRepositoryContract):
    @pytest.fixture
    def uow(self, connections: Connections) -> SqlUnitOfWorkFactory:
        return SqlUnitOfWorkFactory(connections.engine)
