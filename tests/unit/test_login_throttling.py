"""Brute-force protection of logins, over fakes: slowed from 10 failures, refused from 20."""

from __future__ import annotations

import pytest

from actors.auth.crypto import SecretBox
from actors.auth.errors import InvalidCredentialsError, TooManyAttemptsError
from actors.auth.model import LoginPolicy, Rbac, client_address
from actors.auth.service import AuthService, TokenPolicy
from storage.errors import StorageUnavailableError
from tests.fakes import (
    FakeLoginThrottle,
    FakePasswordHasher,
    FakeSessionStateCache,
    FakeUnitOfWorkFactory,
)

PASSWORD = "correct horse battery staple"
EMAIL = "ann@example.com"
WINDOW_S = 900


class Sleeps:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


World = tuple[AuthService, FakeLoginThrottle, Sleeps]


@pytest.fixture
async def world() -> World:
    throttle, sleeps = FakeLoginThrottle(), Sleeps()
    service = AuthService(
        FakeUnitOfWorkFactory(),
        FakeSessionStateCache(),
        FakePasswordHasher(),
        box=SecretBox({"k": b"k" * 32}, "k"),
        rbac=Rbac(),
        policy=TokenPolicy(),
        common_passwords=frozenset(),
        throttle=throttle,
        login_policy=LoginPolicy(window_s=WINDOW_S),
        sleep=sleeps,
    )
    await service.start()
    await service.register(EMAIL, PASSWORD, None)
    return service, throttle, sleeps


async def fail(
    service: AuthService, times: int, email: str = EMAIL, client: str | None = None
) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentialsError):
            await service.login(email, "wrong password!!", "", client)


async def test_from_ten_failures_each_attempt_is_slowed_more(world: World) -> None:
    service, _, sleeps = world
    await fail(service, 10)
    assert sleeps.waits == []
    await fail(service, 5)
    assert sleeps.waits == sorted(sleeps.waits)
    assert len(sleeps.waits) == 5 and 0 < sleeps.waits[0] < sleeps.waits[-1] <= 2.0


async def test_from_twenty_failures_even_the_right_password_is_refused(world: World) -> None:
    service, throttle, _ = world
    await fail(service, 20)
    throttle.now_ms += 100_000
    with pytest.raises(TooManyAttemptsError) as refused:
        await service.login(EMAIL, PASSWORD, "")
    assert refused.value.retry_after_s == WINDOW_S - 100
    throttle.now_ms += (WINDOW_S - 100) * 1000  # Retry-After has passed
    assert (await service.login(EMAIL, PASSWORD, "")).access_token


async def test_a_success_clears_the_email_counter(world: World) -> None:
    service, throttle, sleeps = world
    await fail(service, 15)
    await service.login(EMAIL.upper(), PASSWORD, "")
    assert throttle.count(f"email:{EMAIL}") == 0
    waits = len(sleeps.waits)
    await fail(service, 9)
    assert len(sleeps.waits) == waits


async def test_unknown_and_known_emails_are_counted_alike(world: World) -> None:
    service, _, sleeps = world
    await fail(service, 15, email="nobody@example.com")
    await fail(service, 15)
    assert len(sleeps.waits) == 10
    assert sleeps.waits[:5] == sleeps.waits[5:]
    for email in (EMAIL, "nobody@example.com"):
        await fail(service, 5, email=email)
        with pytest.raises(TooManyAttemptsError):
            await service.login(email, PASSWORD, "")


async def test_a_client_address_is_refused_after_300_failures(world: World) -> None:
    service, throttle, _ = world
    for i in range(300):
        await fail(service, 1, email=f"u{i}@example.com", client="203.0.113.9")
    with pytest.raises(TooManyAttemptsError):
        await service.login(EMAIL, PASSWORD, "", "203.0.113.9")
    assert (await service.login(EMAIL, PASSWORD, "", "203.0.113.10")).access_token
    assert (await service.login(EMAIL, PASSWORD, "", None)).access_token
    assert throttle.count("addr:203.0.113.10") == 0  # a success is not held against it


async def test_logins_fail_closed_when_the_counters_cannot_be_read(world: World) -> None:
    service, throttle, _ = world
    throttle.down = True
    with pytest.raises(StorageUnavailableError):
        await service.login(EMAIL, PASSWORD, "")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("198.51.100.7", None, "198.51.100.7"),
        ("198.51.100.7", "203.0.113.1", "198.51.100.7"),  # an untrusted peer's header is ignored
        ("127.0.0.1", None, None),  # a trusted proxy that did not say: unknown
        ("127.0.0.1", "203.0.113.1, 10.0.0.2", "10.0.0.2"),  # the entry the proxy added
        ("127.0.0.1", "not-an-address", None),
        ("10.1.2.3", "2001:db8::1", "2001:db8::1"),
        (None, "203.0.113.1", None),
    ],
)
def test_client_address_trusts_only_the_configured_proxies(
    peer: str | None, forwarded_for: str | None, expected: str | None
) -> None:
    assert client_address(peer, forwarded_for, ("127.0.0.1", "10.0.0.0/8")) == expected


def test_policy_delays_grow_to_a_cap_and_retry_after_is_bounded() -> None:
    policy = LoginPolicy()
    delays = [policy.delay_s(n) for n in range(40)]
    assert delays[:10] == [0.0] * 10
    assert delays == sorted(delays) and max(delays) == 2.0
    assert policy.retry_after_s(1) == 1
    assert policy.retry_after_s(10**9) == 900
    assert policy.retry_after_s(1500) == 2
