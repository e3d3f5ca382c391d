from __future__ import annotations

from uuid import UUID

import pytest

from storage.ports import UnitOfWorkFactory
from tests.contracts.payments_repositories import (
    LedgerRepositoryContract,
    OperationLogContract,
    WalletRepositoryContract,
)
from tests.fakes import FakeUnitOfWorkFactory


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


class TestFakeWalletRepository(WalletRepositoryContract):
    pass


class TestFakeLedgerRepository(LedgerRepositoryContract):
    pass


class TestFakeOperationLog(OperationLogContract):
    async def stored_events(self, uow: UnitOfWorkFactory, ids: list[UUID]) -> set[UUID]:
        assert isinstance(uow, FakeUnitOfWorkFactory)
        return set(ids) & set(uow.tables.outbox)


def test_factory_keeps_the_payments_tables_beside_the_others() -> None:
    factory = FakeUnitOfWorkFactory()
    assert factory.wallets is factory.tables.wallets
    assert factory.ledger is factory.tables.ledger
    assert factory.operations is factory.tables.operations
