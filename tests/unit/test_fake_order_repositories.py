from __future__ import annotations

import pytest

from tests.contracts.order_repositories import OrderRepositoryContract, SagaRepositoryContract
from tests.fakes import FakeUnitOfWorkFactory


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


class TestFakeOrderRepository(OrderRepositoryContract):
    pass


class TestFakeSagaRepository(SagaRepositoryContract):
    pass
