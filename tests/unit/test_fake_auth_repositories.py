from __future__ import annotations

import pytest

from tests.contracts.auth_repositories import (
    AuditLogContract,
    RefreshTokenRepositoryContract,
    SessionRepositoryContract,
    SigningKeyRepositoryContract,
    UserRepositoryContract,
)
from tests.fakes import FakeUnitOfWorkFactory


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


class TestFakeUserRepository(UserRepositoryContract):
    pass


class TestFakeSessionRepository(SessionRepositoryContract):
    pass


class TestFakeRefreshTokenRepository(RefreshTokenRepositoryContract):
    pass


class TestFakeSigningKeyRepository(SigningKeyRepositoryContract):
    pass


class TestFakeAuditLog(AuditLogContract):
    pass


def test_factory_keeps_products_in_rows_beside_the_auth_tables() -> None:
    factory = FakeUnitOfWorkFactory()
    assert factory.rows is factory.tables.products
    assert factory.users is factory.tables.users
