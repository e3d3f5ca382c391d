"""The second factor over fakes, with an injected clock: TOTP steps and recovery codes once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pyotp
import pytest

from actors.auth.crypto import SecretBox
from actors.auth.errors import InvalidCredentialsError, InvalidInputError, MfaStateError
from actors.auth.model import Rbac
from actors.auth.service import (
    AuthService,
    IssuedTokens,
    MfaChallenge,
    TokenPolicy,
    recovery_code_hash,
)
from storage.records import UserRecord
from tests.fakes import FakePasswordHasher, FakeSessionStateCache, FakeUnitOfWorkFactory

PASSWORD = "correct horse battery staple"
EMAIL = "ann@example.com"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def code(self, secret: str, steps: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.now + timedelta(seconds=30 * steps))


World = tuple[AuthService, FakeUnitOfWorkFactory, Clock]


@pytest.fixture
def world() -> World:
    uow, clock = FakeUnitOfWorkFactory(), Clock()
    service = AuthService(
        uow,
        FakeSessionStateCache(),
        FakePasswordHasher(),
        box=SecretBox({"k": b"k" * 32}, "k"),
        rbac=Rbac(),
        policy=TokenPolicy(access_ttl_s=600, session_ttl_s=3600),
        common_passwords=frozenset(),
        clock=clock,
    )
    return service, uow, clock


async def _enabled(world: World) -> tuple[UserRecord, str, list[str]]:
    service, _, clock = world
    await service.start()
    user = await service.register(EMAIL, PASSWORD, None)
    enrolled = await service.enroll_mfa(user.id)
    codes = await service.activate_mfa(user.id, clock.code(enrolled.secret))
    return user, enrolled.secret, codes


async def _challenge(service: AuthService) -> str:
    answer = await service.login(EMAIL, PASSWORD, "pytest")
    assert isinstance(answer, MfaChallenge)
    return answer.mfa_token


def _kinds(uow: FakeUnitOfWorkFactory) -> list[str]:
    return [e.kind for e in sorted(uow.tables.audit.values(), key=lambda e: e.at)]


async def test_enroll_gives_an_otpauth_uri_and_the_secret_is_sealed(world: World) -> None:
    service, uow, _ = world
    await service.start()
    user = await service.register(EMAIL, PASSWORD, None)
    enrolled = await service.enroll_mfa(user.id)
    assert enrolled.otpauth_uri.startswith("otpauth://totp/shoal:ann%40example.com?")
    assert "issuer=shoal" in enrolled.otpauth_uri
    state = uow.tables.mfa[user.id]
    assert state.pending_secret is not None
    assert enrolled.secret.encode() not in state.pending_secret
    assert not (await service.me(user.id)).mfa_enabled


async def test_activation_turns_mfa_on_with_ten_recovery_codes(world: World) -> None:
    service, uow, _ = world
    user, _, codes = await _enabled(world)
    assert len(codes) == len(set(codes)) == 10
    assert (await service.me(user.id)).mfa_enabled
    assert {"mfa_enrolled", "mfa_activated"} <= set(_kinds(uow))
    with pytest.raises(MfaStateError):
        await service.enroll_mfa(user.id)


async def test_activation_needs_an_enrollment_and_a_right_code(world: World) -> None:
    service, uow, clock = world
    await service.start()
    user = await service.register(EMAIL, PASSWORD, None)
    with pytest.raises(MfaStateError):
        await service.activate_mfa(user.id, "123456")
    enrolled = await service.enroll_mfa(user.id)
    with pytest.raises(InvalidInputError) as wrong:
        await service.activate_mfa(user.id, clock.code(enrolled.secret, steps=5))
    assert wrong.value.field == "code"
    assert "mfa_failed" in _kinds(uow)
    await service.activate_mfa(user.id, clock.code(enrolled.secret))
    with pytest.raises(MfaStateError):
        await service.activate_mfa(user.id, clock.code(enrolled.secret, steps=1))


async def test_login_with_mfa_gives_a_challenge_not_tokens(world: World) -> None:
    service, uow, _ = world
    await _enabled(world)
    token = await _challenge(service)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "shoal-mfa" and claims["typ"] == "mfa"
    assert claims["exp"] - claims["iat"] == 300
    assert not uow.tables.sessions


async def test_the_activation_code_counts_as_used(world: World) -> None:
    service, _, clock = world
    _, secret, _ = await _enabled(world)
    token = await _challenge(service)
    with pytest.raises(InvalidCredentialsError):
        await service.verify_mfa(token, clock.code(secret), None, "pytest")


async def test_a_totp_code_works_once(world: World) -> None:
    service, uow, clock = world
    _, secret, _ = await _enabled(world)
    token = await _challenge(service)
    issued = await service.verify_mfa(token, clock.code(secret, steps=1), None, "pytest")
    assert isinstance(issued, IssuedTokens) and issued.session_id in uow.tables.sessions
    with pytest.raises(InvalidCredentialsError):
        await service.verify_mfa(token, clock.code(secret, steps=1), None, "pytest")
    clock.now += timedelta(seconds=60)
    await service.verify_mfa(token, clock.code(secret), None, "pytest")


async def test_a_wrong_or_stale_code_is_refused_and_audited(world: World) -> None:
    service, uow, clock = world
    _, secret, _ = await _enabled(world)
    token = await _challenge(service)
    for code in (
        "000000" if clock.code(secret) != "000000" else "111111",
        clock.code(secret, steps=-3),
    ):
        with pytest.raises(InvalidCredentialsError):
            await service.verify_mfa(token, code, None, "pytest")
    assert _kinds(uow).count("mfa_failed") == 2


async def test_a_recovery_code_works_once(world: World) -> None:
    service, _, _ = world
    _, _, codes = await _enabled(world)
    token = await _challenge(service)
    await service.verify_mfa(token, None, codes[0].lower(), "pytest")
    with pytest.raises(InvalidCredentialsError):
        await service.verify_mfa(token, None, codes[0], "pytest")
    await service.verify_mfa(token, None, codes[1], "pytest")


async def test_an_access_token_is_not_an_mfa_token(world: World) -> None:
    service, _, clock = world
    _, secret, _ = await _enabled(world)
    await service.disable_mfa((await _user(service)).id, clock.code(secret, steps=1), None)
    access = await service.login(EMAIL, PASSWORD, "pytest")
    assert isinstance(access, IssuedTokens)
    with pytest.raises(InvalidCredentialsError):
        await service.verify_mfa(access.access_token, "123456", None, "pytest")
    with pytest.raises(InvalidCredentialsError):
        await service.verify_mfa("not a token", "123456", None, "pytest")


async def test_an_mfa_token_is_refused_as_an_access_token(world: World) -> None:
    service, uow, _ = world
    await _enabled(world)
    token = await _challenge(service)
    key = next(iter(uow.signing_keys.values()))
    public = jwt.PyJWK.from_json(key.public_jwk).key
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token,
            public,
            algorithms=["EdDSA"],
            audience="shoal-api",
            issuer="shoal",
            options={"verify_exp": False},
        )


async def test_an_expired_mfa_token_is_refused(world: World) -> None:
    service, _, clock = world
    _, secret, _ = await _enabled(world)
    token = await _challenge(service)
    clock.now += timedelta(minutes=6)
    with pytest.raises(InvalidCredentialsError):
        await service.verify_mfa(token, clock.code(secret), None, "pytest")


async def test_disable_needs_a_right_code_and_logins_then_give_tokens(world: World) -> None:
    service, uow, clock = world
    user, secret, codes = await _enabled(world)
    with pytest.raises(InvalidInputError) as wrong:
        await service.disable_mfa(user.id, None, "AAAAA-AAAAA")
    assert wrong.value.field == "recovery_code"
    await service.disable_mfa(user.id, None, codes[3])
    assert not (await service.me(user.id)).mfa_enabled
    assert isinstance(await service.login(EMAIL, PASSWORD, "pytest"), IssuedTokens)
    assert not any(k[0] == user.id for k in uow.tables.recovery_codes)
    with pytest.raises(MfaStateError):
        await service.disable_mfa(user.id, clock.code(secret), None)
    assert "mfa_disabled" in _kinds(uow)


async def test_admin_reset_turns_mfa_off(world: World) -> None:
    service, uow, _ = world
    user, _, _ = await _enabled(world)
    await service.reset_mfa(None, user.id)
    assert not (await service.me(user.id)).mfa_enabled
    assert "mfa_reset" in _kinds(uow)


def test_recovery_code_hash_ignores_case_and_dashes() -> None:
    assert recovery_code_hash("abcde-fghij") == recovery_code_hash("ABCDEFGHIJ")


async def _user(service: AuthService) -> UserRecord:
    async with service._uow() as uow:
        found = await uow.users.by_email(EMAIL)
    assert found is not None
    return found
