"""User administration, brute-force protection and the `shoal users/keys` commands, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from cluster.settings import Settings
from tests.e2e.conftest import STRONG_PASSWORD, login_with_retry, register_and_login

SHOAL = str(Path(sys.executable).with_name("shoal"))
TOO_MANY = "urn:shoal:problem:too-many-attempts"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin(settings: Settings, cluster: list[object], anon: httpx.Client) -> dict[str, Any]:
    """An admin made through the auth actor, logged in: its headers and id."""
    import ray

    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    auth = ray.get_actor("auth", namespace=settings.namespace)
    user = ray.get(auth.create_user.remote(email, STRONG_PASSWORD, ["admin"], "e2e"), timeout=60)
    login = anon.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert login.status_code == 200, login.text
    return {"headers": bearer(login.json()["access_token"]), "id": str(user.id)}


def test_a_customer_may_not_manage_users(http: httpx.Client) -> None:
    assert http.get("/admin/audit").status_code == 403
    target = str(uuid.uuid4())
    assert http.post(f"/admin/users/{target}/roles", json={"roles": ["admin"]}).status_code == 403
    assert http.post(f"/admin/users/{target}/disable").status_code == 403


def test_a_granted_role_applies_to_the_next_request_with_the_same_token(
    anon: httpx.Client, admin: dict[str, Any]
) -> None:
    customer = register_and_login(anon)
    mine = bearer(customer["access_token"])
    assert "products:write" not in anon.get("/auth/me", headers=mine).json()["permissions"]
    changed = anon.post(
        f"/admin/users/{customer['user_id']}/roles",
        json={"roles": ["customer", "catalog_manager"]},
        headers=admin["headers"],
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "id": customer["user_id"],
        "roles": ["customer", "catalog_manager"],
    }
    me = anon.get("/auth/me", headers=mine).json()
    assert me["roles"] == ["customer", "catalog_manager"]
    assert "products:write" in me["permissions"]


def test_unknown_roles_users_and_extra_fields_are_refused(
    anon: httpx.Client, admin: dict[str, Any]
) -> None:
    customer = register_and_login(anon)
    path = f"/admin/users/{customer['user_id']}/roles"
    unknown = anon.post(path, json={"roles": ["wizard"]}, headers=admin["headers"])
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "roles"
    extra = anon.post(path, json={"roles": [], "disabled": True}, headers=admin["headers"])
    assert extra.status_code == 422
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        body = {"roles": ["customer"]}
        assert (
            anon.post(f"/admin/users/{missing}/roles", json=body, headers=admin["headers"])
        ).status_code == 404
        assert (
            anon.post(f"/admin/users/{missing}/disable", headers=admin["headers"])
        ).status_code == 404


def test_disabling_refuses_the_tokens_within_a_second_and_every_login(
    anon: httpx.Client, admin: dict[str, Any]
) -> None:
    customer = register_and_login(anon)
    mine = bearer(customer["access_token"])
    assert anon.get("/auth/me", headers=mine).status_code == 200
    disabled = anon.post(f"/admin/users/{customer['user_id']}/disable", headers=admin["headers"])
    assert disabled.status_code == 204
    deadline = time.monotonic() + 1.0
    while anon.get("/auth/me", headers=mine).status_code != 401:
        assert time.monotonic() < deadline, "the disabled user's token still works after 1 s"
        time.sleep(0.05)
    refreshed = anon.post("/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    assert refreshed.status_code == 401
    assert login_with_retry(anon, customer["email"], STRONG_PASSWORD).status_code == 401


def test_the_audit_log_lists_admin_actions_newest_first(
    anon: httpx.Client, admin: dict[str, Any]
) -> None:
    customer = register_and_login(anon)
    base = f"/admin/users/{customer['user_id']}"
    body = {"roles": ["finance"]}
    assert anon.post(f"{base}/roles", json=body, headers=admin["headers"]).status_code == 200
    assert anon.post(f"{base}/disable", headers=admin["headers"]).status_code == 204
    page = anon.get("/admin/audit?limit=100", headers=admin["headers"])
    assert page.status_code == 200
    items = page.json()["items"]
    assert [i["at"] for i in items] == sorted((i["at"] for i in items), reverse=True)
    about = [i for i in items if i["user_id"] == customer["user_id"]]
    assert [i["kind"] for i in about][:2] == ["user_disabled", "role_changed"]
    assert {i["actor_id"] for i in about[:2]} == {admin["id"]}
    assert about[1]["detail"]["roles"] == ["finance"]
    assert all(len(i["trace_id"]) > 0 for i in about)

    first = anon.get("/admin/audit?limit=2", headers=admin["headers"]).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = anon.get(
        "/admin/audit",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=admin["headers"],
    ).json()
    assert {i["id"] for i in first["items"]}.isdisjoint(i["id"] for i in second["items"])
    assert second["items"][0]["at"] <= first["items"][-1]["at"]
    bad = anon.get("/admin/audit?cursor=bm9wZQ", headers=admin["headers"])
    assert bad.status_code == 422


def test_repeated_wrong_passwords_lock_the_email_until_retry_after(anon: httpx.Client) -> None:
    email = register_and_login(anon)["email"]
    answers = [
        login_with_retry(anon, email, "wrong password, again").status_code for _ in range(25)
    ]
    assert answers[:20] == [401] * 20
    assert answers[20:] == [429] * 5
    refused = login_with_retry(anon, email, STRONG_PASSWORD)  # even the right password, for now
    assert refused.status_code == 429
    assert refused.json()["type"] == TOO_MANY
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 900
    time.sleep(retry_after + 0.5)
    assert login_with_retry(anon, email, STRONG_PASSWORD).status_code == 200


def cli_env(settings: Settings) -> dict[str, str]:
    """The session stack's settings as the `shoal` command reads them."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if isinstance(value, str | int | float | Path) and not isinstance(value, bool):
            env[f"SHOAL_{name.upper()}"] = str(value)
    return env


def shoal(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHOAL, *args],
        env=cli_env(settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_shoal_users_create_grant_and_disable(settings: Settings, anon: httpx.Client) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    created = shoal(
        settings,
        "users",
        "create",
        "--email",
        email,
        "--role",
        "catalog_manager",
        "--password-stdin",
        stdin=STRONG_PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr[-2000:]
    tokens = login_with_retry(anon, email, STRONG_PASSWORD)
    assert tokens.status_code == 200, tokens.text
    mine = bearer(tokens.json()["access_token"])
    assert anon.get("/auth/me", headers=mine).json()["roles"] == ["catalog_manager"]

    granted = shoal(settings, "users", "grant", "--email", email, "--role", "finance")
    assert granted.returncode == 0, granted.stderr[-2000:]
    assert anon.get("/auth/me", headers=mine).json()["roles"] == ["catalog_manager", "finance"]
    unknown = shoal(settings, "users", "grant", "--email", email, "--role", "wizard")
    assert unknown.returncode == 1
    assert "roles" in unknown.stderr and "Traceback" not in unknown.stderr

    disabled = shoal(settings, "users", "disable", "--email", email)
    assert disabled.returncode == 0, disabled.stderr[-2000:]
    assert anon.get("/auth/me", headers=mine).status_code == 401
    assert login_with_retry(anon, email, STRONG_PASSWORD).status_code == 401


def test_shoal_keys_rotate_keeps_existing_tokens_valid(
    settings: Settings, anon: httpx.Client
) -> None:
    before = register_and_login(anon)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    rotated = shoal(settings, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr[-2000:]
    new_kid = rotated.stdout.strip().splitlines()[-1]
    assert new_kid != old_kid
    deadline = time.monotonic() + 10
    while True:
        kids = {k["kid"] for k in anon.get("/.well-known/jwks.json").json()["keys"]}
        if {old_kid, new_kid} <= kids:
            break
        assert time.monotonic() < deadline, kids
        time.sleep(0.5)
    assert anon.get("/auth/me", headers=bearer(before["access_token"])).status_code == 200
    after = login_with_retry(anon, before["email"], STRONG_PASSWORD).json()
    assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid
    assert anon.get("/auth/me", headers=bearer(after["access_token"])).status_code == 200


def test_up_ensures_the_configured_admin_idempotently(
    settings: Settings, cluster: list[object], anon: httpx.Client
) -> None:
    from pydantic import SecretStr

    from cluster import bootstrap

    existing = register_and_login(anon)
    for email in (f"boss-{uuid.uuid4().hex[:8]}@example.com", existing["email"]):
        configured = settings.model_copy(
            update={"admin_email": email, "admin_password": SecretStr(STRONG_PASSWORD)}
        )
        assert bootstrap.ensure_admin(configured) == email
        assert bootstrap.ensure_admin(configured) == email  # again: nothing changes
        token = login_with_retry(anon, email, STRONG_PASSWORD).json()["access_token"]
        roles = anon.get("/auth/me", headers=bearer(token)).json()["roles"]
        assert roles.count("admin") == 1
    assert bootstrap.ensure_admin(settings) is None  # not configured: nothing to do
