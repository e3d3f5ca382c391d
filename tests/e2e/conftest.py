from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cluster.settings import Settings

STRONG_PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="session")
def anon(settings: Settings, cluster: list[object]) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with httpx.Client(base_url=settings.base_url, timeout=30) as client:
        yield client


def register_and_login(client: httpx.Client, email: str | None = None) -> dict[str, Any]:
    """A new customer's login answer (tokens and session id), plus its ``email``."""
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
    created = client.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD})
    assert created.status_code == 201, created.text
    login = client.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert login.status_code == 200, login.text
    return {**login.json(), "email": email, "user_id": created.json()["id"]}


@pytest.fixture(scope="session")
def http(settings: Settings, anon: httpx.Client) -> Iterator[httpx.Client]:
    """A client logged in as a customer (who may read products)."""
    tokens = register_and_login(anon)
    headers = {"authorization": f"Bearer {tokens['access_token']}"}
    with httpx.Client(base_url=settings.base_url, timeout=30, headers=headers) as client:
        yield client


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, from /metrics."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def login_with_retry(anon: httpx.Client, email: str, password: str) -> httpx.Response:
    """``POST /auth/login``, waiting out the per-address rate limit of auth routes."""
    for _ in range(30):
        response = anon.post("/auth/login", json={"email": email, "password": password})
        if response.status_code != 429 or "too-many-attempts" in response.json()["type"]:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))
    return response


class PatientTransport(httpx.HTTPTransport):
    """Waits out the per-user rate limit (429 ``rate-limited``) and sends the request again.

    A refused request changed nothing, so sending it again is what any well-behaved client
    does; tests that assert on 429 use a plain client.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        for _ in range(30):
            response = super().handle_request(request)
            if response.status_code != 429:
                return response
            response.read()
            if not response.json()["type"].endswith("rate-limited"):
                return response
            time.sleep(float(response.headers.get("retry-after", "1")))
        return response


def staff_client(settings: Settings, anon: httpx.Client, roles: list[str]) -> httpx.Client:
    """A logged-in client of a new user with ``roles``, made through the auth actor.

    It waits out its rate limit (:class:`PatientTransport`): shared by a whole module, it
    may send more than one burst. The user's id is the client's ``user_id`` attribute.
    """
    import ray

    email = f"staff-{uuid.uuid4().hex[:10]}@example.com"
    auth = ray.get_actor("auth", namespace=settings.namespace)
    user = ray.get(auth.create_user.remote(email, STRONG_PASSWORD, roles, "e2e"), timeout=60)
    login = login_with_retry(anon, email, STRONG_PASSWORD)
    assert login.status_code == 200, login.text
    headers = {"authorization": f"Bearer {login.json()['access_token']}"}
    client = httpx.Client(
        base_url=settings.base_url, timeout=60, headers=headers, transport=PatientTransport()
    )
    client.user_id = str(user.id)  # type: ignore[attr-defined]
    return client


@pytest.fixture(scope="module")
def catalog(settings: Settings, anon: httpx.Client) -> Iterator[httpx.Client]:
    """A catalogue manager of the module (products:write, inventory:restock)."""
    with staff_client(settings, anon, ["catalog_manager"]) as client:
        yield client


@pytest.fixture(scope="module")
def finance(settings: Settings, anon: httpx.Client) -> Iterator[httpx.Client]:
    """A finance user of the module (wallets:credit, wallets:read)."""
    with staff_client(settings, anon, ["finance"]) as client:
        yield client
