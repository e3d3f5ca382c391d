"""Per-user GCRA limits over HTTP: headers on every authenticated answer, 429 past the burst."""

from __future__ import annotations

import httpx

from cluster.settings import Settings
from tests.e2e.conftest import register_and_login


def test_authenticated_answers_carry_rate_limit_headers_and_429_past_the_burst(
    anon: httpx.Client, settings: Settings
) -> None:
    tokens = register_and_login(anon)
    headers = {"authorization": f"Bearer {tokens['access_token']}"}
    first = anon.get("/auth/me", headers=headers)
    assert first.status_code == 200
    assert first.headers["ratelimit-limit"] == str(settings.rate_limit_burst)
    assert int(first.headers["ratelimit-remaining"]) == settings.rate_limit_burst - 1
    assert int(first.headers["ratelimit-reset"]) >= 0
    limited = None
    for _ in range(settings.rate_limit_burst * 10):
        response = anon.get("/auth/me", headers=headers)
        if response.status_code == 429:
            limited = response
            break
        assert response.status_code == 200
    assert limited is not None, "the burst never ran out"
    assert limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-remaining"] == "0"
    # Another user has a bucket of their own.
    other = register_and_login(anon)
    assert (
        anon.get(
            "/auth/me", headers={"authorization": f"Bearer {other['access_token']}"}
        ).status_code
        == 200
    )


def test_probes_are_not_rate_limited(anon: httpx.Client) -> None:
    response = anon.get("/healthz")
    assert "ratelimit-limit" not in response.headers
