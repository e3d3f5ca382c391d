from __future__ import annotations

import pytest

from tests.contracts.product_repository import ProductRepositoryContract
from tests.fakes import FakeUnitOfWorkFactory


class TestFakeProductRepository(ProductRepositoryContract):
    @pytest.fixture
    def uow(self) -> FakeUnitOfWorkFactory:
        return FakeUnitOfWorkFactory()
