"""Unknown emails and wrong passwords cost the same: no account enumeration by timing.

This is a security property, not a performance figure: the bound is loose (medians within
a factor of two), and it would catch the classic leak, where an unknown email skips the
password hash and answers many times faster.
"""

from __future__ import annotations

import statistics
import time
import uuid

import httpx

from tests.e2e.conftest import register_and_login

ATTEMPTS = 8


def _timed_login(client: httpx.Client, email: str) -> float:
    started = time.perf_counter()
    response = client.post("/auth/login", json={"email": email, "password": "not the password!"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 401
    return elapsed


def test_login_timing_for_unknown_and_known_emails_is_within_noise(anon: httpx.Client) -> None:
    known = [register_and_login(anon)["email"] for _ in range(ATTEMPTS)]
    unknown = [f"ghost-{uuid.uuid4().hex}@example.com" for _ in range(ATTEMPTS)]
    _timed_login(anon, unknown[0])  # warm the path once
    known_s, unknown_s = [], []
    for k, u in zip(known, unknown, strict=True):  # interleaved, so load drifts hit both
        known_s.append(_timed_login(anon, k))
        unknown_s.append(_timed_login(anon, u))
    a, b = statistics.median(known_s), statistics.median(unknown_s)
    assert 0.5 < a / b < 2.0, f"known {a * 1000:.1f} ms vs unknown {b * 1000:.1f} ms"
