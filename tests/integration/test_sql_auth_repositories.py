from __future__ import annotations

import pytest

from storage.connections import Connections
from storage.products import SqlUnitOfWorkFactory
from tests.contracts.auth_repositories import (
    AuditLogContract,
    RefreshTokenRepositoryContract,
    SessionRepositoryContract,
    SigningKeyRepositoryContract,
    UserRepositoryContract,
)


@pytest.fixture
def uow(connections: Connections) -> SqlUnitOfWorkFactory:
    return SqlUnitOfWorkFactory(connections.engine)


class TestSqlUserRepository(UserRepositoryContract):
    pass


class TestSqlSessionRepository(SessionRepositoryContract):
    pass


class TestSqlRefreshTokenRepository(RefreshTokenRepositoryContract):
    pass


class TestSqlSigningKeyRepository(SigningKeyRepositoryContract):
    pass


class TestSqlAuditLog(AuditLogContract):
    pass
