"""User administration over fakes: roles, disabling, creation by operators, the audit log."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from actors.auth.crypto import SecretBox
from actors.auth.errors import (
    EmailTakenError,
    InvalidCredentialsError,
    UnknownRoleError,
    UnknownUserError,
    WeakPasswordError,
)
from actors.auth.model import Rbac
from actors.auth.service import AuthService, TokenPolicy
from storage.records import UserState
from tests.fakes import FakePasswordHasher, FakeSessionStateCache, FakeUnitOfWorkFactory

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)  # every event gets its own instant
        return self.now


World = tuple[AuthService, FakeUnitOfWorkFactory, FakeSessionStateCache]


@pytest.fixture
async def world() -> World:
    uow, cache = FakeUnitOfWorkFactory(), FakeSessionStateCache()
    service = AuthService(
        uow,
        cache,
        FakePasswordHasher(),
        box=SecretBox({"k": b"k" * 32}, "k"),
        rbac=Rbac.with_extra({"support": ["users:read"]}),
        policy=TokenPolicy(),
        common_passwords=frozenset(),
        clock=Clock(),
    )
    await service.start()
    return service, uow, cache


def kinds(uow: FakeUnitOfWorkFactory) -> list[str]:
    return [a.kind for a in sorted(uow.audit.values(), key=lambda a: a.at)]


async def test_set_roles_replaces_them_publishes_and_audits_the_admin(world: World) -> None:
    service, uow, cache = world
    admin = await service.create_user("root@example.com", PASSWORD, ["admin"])
    user = await service.register("ann@example.com", PASSWORD, None)
    changed = await service.set_roles(admin.id, user.id, ["catalog_manager", "support"])
    assert changed.roles == ("catalog_manager", "support")
    assert uow.users[user.id].roles == changed.roles
    assert cache.users[user.id] == UserState(("catalog_manager", "support"), False)
    event = max(uow.audit.values(), key=lambda a: a.at)
    assert (event.kind, event.user_id, event.actor_id) == ("role_changed", user.id, admin.id)
    assert json.loads(event.detail) == {
        "roles": ["catalog_manager", "support"],
        "before": ["customer"],
    }


async def test_unknown_role_or_user_changes_nothing(world: World) -> None:
    service, uow, cache = world
    user = await service.register("bob@example.com", PASSWORD, None)
    with pytest.raises(UnknownRoleError) as refused:
        await service.set_roles(None, user.id, ["customer", "wizard"])
    assert refused.value.field == "roles"
    with pytest.raises(UnknownUserError):
        await service.set_roles(None, uuid.uuid4(), ["customer"])
    assert uow.users[user.id].roles == ("customer",)
    assert user.id not in cache.users
    assert "role_changed" not in kinds(uow)


async def test_disable_revokes_every_session_and_refuses_logins(world: World) -> None:
    service, uow, cache = world
    admin = await service.create_user("root@example.com", PASSWORD, ["admin"])
    user = await service.register("cy@example.com", PASSWORD, None)
    first = await service.login("cy@example.com", PASSWORD, "a")
    second = await service.login("cy@example.com", PASSWORD, "b")
    await service.disable_user(admin.id, user.id)
    assert {first.session_id, second.session_id} <= cache.revoked
    assert cache.users[user.id].disabled
    assert await service.sessions(user.id) == []
    with pytest.raises(InvalidCredentialsError):
        await service.login("cy@example.com", PASSWORD, "")
    with pytest.raises(InvalidCredentialsError):
        await service.refresh(first.refresh_token)
    disabled = [a for a in uow.audit.values() if a.kind == "user_disabled"]
    assert [(a.user_id, a.actor_id) for a in disabled] == [(user.id, admin.id)]
    with pytest.raises(UnknownUserError):
        await service.disable_user(admin.id, uuid.uuid4())


async def test_create_user_validates_roles_password_and_email(world: World) -> None:
    service, uow, _ = world
    created = await service.create_user("Ops@Example.com", PASSWORD, ["operator", "operator"])
    assert (created.email, created.roles) == ("ops@example.com", ("operator",))
    with pytest.raises(UnknownRoleError):
        await service.create_user("x@example.com", PASSWORD, ["root"])
    with pytest.raises(WeakPasswordError):
        await service.create_user("y@example.com", "short", ["admin"])
    with pytest.raises(EmailTakenError):
        await service.create_user("ops@example.com", PASSWORD, ["admin"])
    assert kinds(uow).count("user_created") == 1


async def test_grant_role_adds_once_and_disable_by_email(world: World) -> None:
    service, uow, cache = world
    user = await service.register("dee@example.com", PASSWORD, None)
    granted = await service.grant_role("DEE@example.com", "finance")
    again = await service.grant_role("dee@example.com", "finance")
    assert granted.roles == again.roles == ("customer", "finance")
    assert kinds(uow).count("role_changed") == 1
    assert cache.users[user.id].roles == ("customer", "finance")
    with pytest.raises(UnknownRoleError):
        await service.grant_role("dee@example.com", "wizard")
    with pytest.raises(UnknownUserError):
        await service.grant_role("nobody@example.com", "finance")
    await service.disable_user_by_email("dee@example.com")
    assert uow.users[user.id].disabled
    with pytest.raises(UnknownUserError):
        await service.disable_user_by_email("not an email")


async def test_audit_events_page_newest_first_without_gaps(world: World) -> None:
    service, uow, _ = world
    for i in range(5):
        await service.register(f"u{i}@example.com", PASSWORD, None)
    everything = await service.audit_events(None, 100)
    assert [a.at for a in everything] == sorted((a.at for a in everything), reverse=True)
    first = await service.audit_events(None, 4)
    rest = await service.audit_events((first[-1].at, first[-1].id), 100)
    assert [a.id for a in first + rest] == [a.id for a in everything]
    assert len(everything) == len(uow.audit)
