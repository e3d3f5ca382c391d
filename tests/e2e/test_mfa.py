"""The second factor over HTTP: enroll, activate, log in with TOTP or recovery codes, turn off."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pyotp
import pytest

from cluster.settings import Settings
from tests.e2e.conftest import STRONG_PASSWORD, register_and_login

STEP_S = 30


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * STEP_S)


def fresh_step() -> int:
    """The current TOTP step, with at least 15 s of it left (steps t-1..t+1 then stay valid)."""
    if time.time() % STEP_S > STEP_S - 15:
        time.sleep(STEP_S - time.time() % STEP_S + 0.1)
    return int(time.time()) // STEP_S


def login(anon: httpx.Client, email: str) -> httpx.Response:
    response = anon.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert response.status_code == 200, response.text
    return response


def enable(anon: httpx.Client, tokens: dict[str, Any], step: int) -> tuple[str, list[str]]:
    """Enroll and activate MFA with the code of ``step``: the secret and the recovery codes."""
    headers = bearer(tokens["access_token"])
    enrolled = anon.post("/auth/mfa/enroll", headers=headers)
    assert enrolled.status_code == 200, enrolled.text
    secret, uri = enrolled.json()["secret"], enrolled.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/") and "issuer=shoal" in uri
    activated = anon.post(
        "/auth/mfa/activate", headers=headers, json={"code": code_at(secret, step)}
    )
    assert activated.status_code == 200, activated.text
    codes = activated.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    return secret, codes


def test_login_with_totp_and_recovery_codes_then_turn_mfa_off(anon: httpx.Client) -> None:
    tokens = register_and_login(anon)
    email, headers = tokens["email"], bearer(tokens["access_token"])
    assert (
        anon.post("/auth/mfa/activate", headers=headers, json={"code": "123456"}).status_code == 409
    )
    step = fresh_step()
    secret, codes = enable(anon, tokens, step - 1)
    assert anon.get("/auth/me", headers=headers).json()["mfa_enabled"] is True
    assert anon.post("/auth/mfa/enroll", headers=headers).status_code == 409

    challenge = login(anon, email).json()
    assert challenge["mfa_required"] is True and "access_token" not in challenge
    assert 0 < challenge["expires_in"] <= 300
    mfa_token = challenge["mfa_token"]
    used = anon.post(
        "/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code_at(secret, step - 1)}
    )
    assert used.status_code == 401, used.text  # the activation's code is spent
    verified = anon.post(
        "/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code_at(secret, step)}
    )
    assert verified.status_code == 200, verified.text
    assert anon.get("/auth/me", headers=bearer(verified.json()["access_token"])).status_code == 200
    again = anon.post(
        "/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code_at(secret, step)}
    )
    assert again.status_code == 401
    assert again.headers["www-authenticate"].startswith("Bearer")

    body = {"mfa_token": mfa_token, "recovery_code": codes[0]}
    assert anon.post("/auth/mfa/verify", json=body).status_code == 200
    assert anon.post("/auth/mfa/verify", json=body).status_code == 401
    both = {"mfa_token": mfa_token, "code": "123456", "recovery_code": codes[1]}
    assert anon.post("/auth/mfa/verify", json=both).status_code == 422
    assert anon.post("/auth/mfa/verify", json={"mfa_token": mfa_token}).status_code == 422
    assert anon.get("/auth/me", headers=bearer(mfa_token)).status_code == 401

    wrong = anon.request(
        "DELETE", "/auth/mfa", headers=headers, json={"recovery_code": "AAAAA-AAAAA"}
    )
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["errors"][0]["field"] == "recovery_code"
    off = anon.request(
        "DELETE", "/auth/mfa", headers=headers, json={"code": code_at(secret, step + 1)}
    )
    assert off.status_code == 204, off.text
    direct = login(anon, email).json()
    assert "access_token" in direct and "mfa_required" not in direct
    assert anon.get("/auth/me", headers=headers).json()["mfa_enabled"] is False


def test_an_access_token_is_not_an_mfa_token(anon: httpx.Client) -> None:
    tokens = register_and_login(anon)
    refused = anon.post(
        "/auth/mfa/verify", json={"mfa_token": tokens["access_token"], "code": "123456"}
    )
    assert refused.status_code == 401


@pytest.fixture(scope="module")
def admin_headers(settings: Settings, cluster: list[object], anon: httpx.Client) -> dict[str, str]:
    import ray

    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    auth = ray.get_actor("auth", namespace=settings.namespace)
    ray.get(auth.create_user.remote(email, STRONG_PASSWORD, ["admin"], "e2e"), timeout=60)
    return bearer(login(anon, email).json()["access_token"])


def test_an_admin_resets_mfa(anon: httpx.Client, admin_headers: dict[str, str]) -> None:
    tokens = register_and_login(anon)
    enable(anon, tokens, fresh_step())
    assert login(anon, tokens["email"]).json()["mfa_required"] is True
    path = f"/admin/users/{tokens['user_id']}/mfa"
    assert anon.delete(path, headers=bearer(tokens["access_token"])).status_code == 403
    assert anon.delete(f"/admin/users/{uuid.uuid4()}/mfa", headers=admin_headers).status_code == 404
    assert anon.delete(path, headers=admin_headers).status_code == 204
    assert "access_token" in login(anon, tokens["email"]).json()
    audit = anon.get("/admin/audit", headers=admin_headers, params={"limit": 100}).json()
    kinds = {e["kind"] for e in audit["items"] if e["user_id"] == tokens["user_id"]}
    assert {"mfa_enrolled", "mfa_activated", "mfa_reset"} <= kinds
