"""The auth use cases over fakes: sessions, refresh rotation, reuse detection, keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from actors.auth.crypto import SecretBox
from actors.auth.errors import EmailTakenError, InvalidCredentialsError, SessionNotFoundError
from actors.auth.model import Rbac
from actors.auth.service import AuthService, TokenPolicy
from tests.fakes import FakePasswordHasher, FakeSessionStateCache, FakeUnitOfWorkFactory

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


World = tuple[AuthService, FakeUnitOfWorkFactory, FakeSessionStateCache, Clock]


@pytest.fixture
def world() -> World:
    uow, cache, clock = FakeUnitOfWorkFactory(), FakeSessionStateCache(), Clock()
    service = AuthService(
        uow,
        cache,
        FakePasswordHasher(),
        box=SecretBox({"k": b"k" * 32}, "k"),
        rbac=Rbac(),
        policy=TokenPolicy(access_ttl_s=600, session_ttl_s=3600),
        common_passwords=frozenset(),
        clock=clock,
    )
    return service, uow, cache, clock


async def test_login_opens_a_session_and_signs_a_verifiable_token(world: World) -> None:
    service, uow, cache, _ = world
    await service.start()
    user = await service.register("Ann@Example.com", PASSWORD, None)
    issued = await service.login("ann@example.com", PASSWORD, "pytest")
    assert issued.session_id in cache.active
    key = next(iter(uow.signing_keys.values()))
    public = jwt.PyJWK.from_json(key.public_jwk).key
    claims = jwt.decode(
        issued.access_token,
        public,
        algorithms=["EdDSA"],
        audience="shoal-api",
        issuer="shoal",
        options={"verify_exp": False},
    )
    assert claims["sub"] == str(user.id)
    assert claims["sid"] == str(issued.session_id)
    assert claims["exp"] - claims["iat"] == 600
    assert b"PRIVATE" not in key.private_key  # sealed at rest


async def test_duplicate_registration_and_bad_logins(world: World) -> None:
    service, *_ = world
    await service.start()
    await service.register("bob@example.com", PASSWORD, "Bob")
    with pytest.raises(EmailTakenError):
        await service.register("BOB@example.com", PASSWORD, None)
    for email, password in (
        ("bob@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ):
        with pytest.raises(InvalidCredentialsError):
            await service.login(email, password, "")


async def test_refresh_rotates_and_reuse_revokes_the_session(world: World) -> None:
    service, uow, cache, _ = world
    await service.start()
    await service.register("c@example.com", PASSWORD, None)
    first = await service.login("c@example.com", PASSWORD, "")
    second = await service.refresh(first.refresh_token)
    assert second.session_id == first.session_id
    with pytest.raises(InvalidCredentialsError):
        await service.refresh(first.refresh_token)  # spent: reuse
    assert first.session_id in cache.revoked
    assert uow.sessions[first.session_id].revoked_at is not None
    with pytest.raises(InvalidCredentialsError):
        await service.refresh(second.refresh_token)  # the family died with the session
    assert any(a.kind == "refresh_reuse_detected" for a in uow.audit.values())


async def test_sessions_expire_and_unknown_tokens_fail(world: World) -> None:
    service, _, _, clock = world
    await service.start()
    await service.register("d@example.com", PASSWORD, None)
    issued = await service.login("d@example.com", PASSWORD, "")
    clock.now += timedelta(hours=2)
    with pytest.raises(InvalidCredentialsError):
        await service.refresh(issued.refresh_token)
    with pytest.raises(InvalidCredentialsError):
        await service.refresh("never-issued")


async def test_only_the_owner_revokes_a_session(world: World) -> None:
    service, _, cache, _ = world
    await service.start()
    eve = await service.register("eve@example.com", PASSWORD, None)
    await service.register("fay@example.com", PASSWORD, None)
    fay = await service.login("fay@example.com", PASSWORD, "")
    with pytest.raises(SessionNotFoundError):
        await service.revoke_session(eve.id, fay.session_id)
    with pytest.raises(SessionNotFoundError):
        await service.revoke_session(eve.id, uuid.uuid4())
    assert fay.session_id not in cache.revoked


async def test_rotating_keeps_the_previous_key_published(world: World) -> None:
    service, uow, _, clock = world
    first = await service.start()
    second = await service.rotate_key()
    assert first != second
    assert uow.signing_keys[first].retired_at == clock.now
    assert uow.signing_keys[second].retired_at is None
    assert await service.start() == second  # a restarted actor signs with the newest key
