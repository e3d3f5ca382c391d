"""Auth over HTTP: the flows of the contract, and the attacks that must change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.e2e.conftest import STRONG_PASSWORD, register_and_login


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def forge(claims: dict[str, Any], header: dict[str, Any], key: Any, alg: str) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_register_login_me_and_jwks(anon: httpx.Client) -> None:
    tokens = register_and_login(anon)
    assert tokens["token_type"] == "Bearer"
    assert 0 < tokens["expires_in"] <= 900
    me = anon.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    body = me.json()
    assert body["email"] == tokens["email"]
    assert body["roles"] == ["customer"]
    assert "products:read" in body["permissions"]
    claims = claims_of(tokens["access_token"])
    assert {"iss", "aud", "sub", "sid", "jti", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] <= 900
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    keys = anon.get("/.well-known/jwks.json").json()["keys"]
    assert kid in {k["kid"] for k in keys}
    assert all("d" not in k for k in keys)  # public halves only


def test_duplicate_email_and_weak_passwords_are_refused(anon: httpx.Client) -> None:
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    assert (
        anon.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD}).status_code
        == 201
    )
    again = anon.post("/auth/register", json={"email": email.upper(), "password": STRONG_PASSWORD})
    assert again.status_code == 409
    for weak in ("short", "password1234", "123qweasdzxc"):
        response = anon.post(
            "/auth/register",
            json={"email": f"w-{uuid.uuid4().hex[:8]}@example.com", "password": weak},
        )
        assert response.status_code == 422, weak
        assert response.json()["errors"][0]["field"] == "password"


@pytest.mark.parametrize("field", ["roles", "id", "balance", "available"])
def test_mass_assignment_is_refused(anon: httpx.Client, field: str) -> None:
    body = {
        "email": f"m-{uuid.uuid4().hex[:8]}@example.com",
        "password": STRONG_PASSWORD,
        field: ["admin"],
    }
    response = anon.post("/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_wrong_password_and_unknown_email_look_the_same(anon: httpx.Client) -> None:
    tokens = register_and_login(anon)
    wrong = anon.post(
        "/auth/login", json={"email": tokens["email"], "password": "not the password!"}
    )
    unknown = anon.post(
        "/auth/login",
        json={"email": f"nobody-{uuid.uuid4().hex}@example.com", "password": "whatever12345"},
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "trace_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)


def test_refresh_rotates_and_a_reused_token_revokes_the_session(anon: httpx.Client) -> None:
    tokens = register_and_login(anon)
    first = anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    pair = first.json()
    assert pair["refresh_token"] != tokens["refresh_token"]
    assert pair["session_id"] == tokens["session_id"]
    reused = anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_unauthenticated(reused)
    # The whole session is gone: the newest refresh token and its access token fail too.
    assert_unauthenticated(
        anon.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    )
    assert_unauthenticated(anon.get("/auth/me", headers=bearer(pair["access_token"])))


def test_logout_refuses_the_sessions_tokens_within_a_second(anon: httpx.Client) -> None:
    tokens = register_and_login(anon)
    headers = bearer(tokens["access_token"])
    assert anon.get("/products", headers=headers).status_code == 200
    assert anon.post("/auth/logout", headers=headers).status_code == 204
    deadline = time.monotonic() + 1.0
    while anon.get("/products", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "access token still accepted after 1 s"
    assert_unauthenticated(
        anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    )


def test_sessions_are_listed_and_revocable_only_by_their_owner(anon: httpx.Client) -> None:
    alice, bob = register_and_login(anon), register_and_login(anon)
    second = anon.post(
        "/auth/login", json={"email": alice["email"], "password": STRONG_PASSWORD}
    ).json()
    listed = anon.get("/auth/sessions", headers=bearer(alice["access_token"])).json()["items"]
    assert {s["id"] for s in listed} == {alice["session_id"], second["session_id"]}
    assert [s["current"] for s in listed if s["id"] == alice["session_id"]] == [True]
    stolen = anon.delete(
        f"/auth/sessions/{alice['session_id']}", headers=bearer(bob["access_token"])
    )
    assert stolen.status_code == 404
    assert anon.get("/auth/me", headers=bearer(alice["access_token"])).status_code == 200
    revoked = anon.delete(
        f"/auth/sessions/{second['session_id']}", headers=bearer(alice["access_token"])
    )
    assert revoked.status_code == 204
    assert_unauthenticated(anon.get("/auth/me", headers=bearer(second["access_token"])))


def test_protected_routes_need_a_token(anon: httpx.Client) -> None:
    for path in ("/products", "/products/ANY-1", "/auth/me", "/auth/sessions"):
        assert_unauthenticated(anon.get(path))
    assert_unauthenticated(anon.get("/products", headers={"authorization": "Basic dXNlcjpwdw=="}))


@pytest.fixture(scope="module")
def victim(anon: httpx.Client) -> dict[str, Any]:
    return register_and_login(anon)


def _tampered_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


def _variants(victim: dict[str, Any], public_jwk: dict[str, Any]) -> dict[str, str]:
    token = victim["access_token"]
    claims = claims_of(token)
    kid = jwt.get_unverified_header(token)["kid"]
    now = int(time.time())
    attacker = Ed25519PrivateKey.generate()
    public_bytes = base64.urlsafe_b64decode(public_jwk["x"] + "==")
    none_token = ".".join(
        [
            b64(json.dumps({"alg": "none", "kid": kid}).encode()),
            b64(json.dumps(claims).encode()),
            "",
        ]
    )
    hs256 = ".".join(
        [
            b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode()),
            b64(json.dumps(claims).encode()),
        ]
    )
    hs256 += "." + b64(hmac.new(public_bytes, hs256.encode(), hashlib.sha256).digest())
    signed = lambda c, h=None: forge(c, h or {"kid": kid}, attacker, "EdDSA")  # noqa: E731
    return {
        "alg none": none_token,
        "HS256 with the public key": hs256,
        "unknown kid": signed(claims, {"kid": "0123456789abcdef"}),
        "kid with a path": signed(claims, {"kid": "../../etc/passwd"}),
        "kid with sql": signed(claims, {"kid": "x' OR '1'='1"}),
        "foreign key, right kid": signed(claims),
        "expired": signed({**claims, "iat": now - 3600, "exp": now - 1800}),
        "not yet valid": signed({**claims, "iat": now + 3600, "nbf": now + 3600}),
        "wrong iss": signed({**claims, "iss": "evil"}),
        "wrong aud": signed({**claims, "aud": "other-api"}),
        "no exp": signed({k: v for k, v in claims.items() if k != "exp"}),
        "tampered payload": _tampered_payload(token),
        "garbage": "not.a.jwt",
    }


def test_forged_and_broken_tokens_are_refused(anon: httpx.Client, victim: dict[str, Any]) -> None:
    keys = anon.get("/.well-known/jwks.json").json()["keys"]
    kid = jwt.get_unverified_header(victim["access_token"])["kid"]
    public_jwk = next(k for k in keys if k["kid"] == kid)
    for name, token in _variants(victim, public_jwk).items():
        response = anon.get("/auth/me", headers=bearer(token))
        assert response.status_code == 401, name
    assert anon.get("/auth/me", headers=bearer(victim["access_token"])).status_code == 200


def test_oversized_nested_and_wrongly_typed_bodies(anon: httpx.Client) -> None:
    nested = b"[" * 5000 + b'"x"' + b"]" * 5000
    deep = anon.post(
        "/auth/login",
        content=b'{"email": ' + nested + b', "password": "p"}',
        headers={"content-type": "application/json"},
    )
    assert deep.status_code in (400, 422)  # unparseable JSON is a bad request
    assert deep.headers["content-type"] == "application/problem+json"
    big = anon.post(
        "/auth/login",
        content=b'{"email": "' + b"a" * 70000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413
    typed = anon.post(
        "/auth/login",
        content=b"email=a",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert typed.status_code == 415
    numbers = anon.post("/auth/login", json={"email": 12345, "password": True})
    assert numbers.status_code == 422
