from __future__ import annotations

import pytest

from actors.auth.crypto import SecretBox, SigningKey, hash_refresh_token, new_refresh_token
from actors.auth.errors import InvalidInputError, WeakPasswordError
from actors.auth.model import Rbac, check_password, normalize_email

COMMON = frozenset({"password1234", "123qweasdzxc"})


def test_every_role_reads_products_and_admin_may_do_anything() -> None:
    rbac = Rbac()
    assert Rbac.allows(rbac.permissions(["finance"]), "products:read")
    assert Rbac.allows(rbac.permissions([]), "products:read")
    assert Rbac.allows(rbac.permissions(["admin"]), "users:manage")
    assert not Rbac.allows(rbac.permissions(["customer"]), "products:write")
    assert not Rbac.allows(rbac.permissions(["no-such-role"]), "orders:read")


def test_a_broad_permission_covers_its_own_variant_but_not_the_reverse() -> None:
    finance = Rbac().permissions(["finance"])
    customer = Rbac().permissions(["customer"])
    assert Rbac.allows(finance, "orders:read:own")
    assert Rbac.allows(customer, "orders:read:own")
    assert not Rbac.allows(customer, "orders:read")


def test_configured_roles_extend_the_built_in_ones() -> None:
    rbac = Rbac.with_extra({"auditor": ["audit:read"], "customer": ["reviews:write"]})
    assert Rbac.allows(rbac.permissions(["auditor"]), "audit:read")
    assert Rbac.allows(rbac.permissions(["customer"]), "reviews:write")
    assert Rbac.allows(rbac.permissions(["customer"]), "orders:create")


@pytest.mark.parametrize("password", ["short", "password1234", "123QWEASDZXC", "aaaaaaaaaaaaaaaa"])
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPasswordError):
        check_password(password, "a@example.com", COMMON)


def test_the_email_as_password_is_refused() -> None:
    with pytest.raises(WeakPasswordError):
        check_password("someone@example.com", "someone@example.com", COMMON)


def test_emails_are_normalised_and_checked() -> None:
    assert normalize_email("  Alice@Example.COM ") == "alice@example.com"
    for bad in ("no-at-sign", "a@b", "a b@example.com", "x" * 250 + "@example.com"):
        with pytest.raises(InvalidInputError):
            normalize_email(bad)


def test_secret_box_round_trips_rotates_and_detects_tampering() -> None:
    old, new = b"o" * 32, b"n" * 32
    sealed_old = SecretBox({"k1": old}, "k1").seal(b"secret", b"ctx")
    box = SecretBox({"k1": old, "k2": new}, "k2")
    assert box.open(sealed_old, b"ctx") == b"secret"  # sealed before the rotation
    sealed_new = box.seal(b"secret", b"ctx")
    assert b"k2" in sealed_new[:8]
    assert box.open(sealed_new, b"ctx") == b"secret"
    with pytest.raises(ValueError, match="failed"):
        box.open(sealed_new, b"other context")
    with pytest.raises(ValueError, match="failed"):
        box.open(sealed_new[:-1] + bytes([sealed_new[-1] ^ 1]), b"ctx")
    with pytest.raises(ValueError, match="no longer configured"):
        SecretBox({"k2": new}, "k2").open(sealed_old, b"ctx")


def test_signing_keys_publish_only_their_public_half() -> None:
    key = SigningKey.generate()
    assert '"d"' not in key.public_jwk
    assert key.kid in key.public_jwk
    assert b"PRIVATE KEY" in key.private_pem


def test_refresh_tokens_are_long_random_and_stored_hashed() -> None:
    token, digest = new_refresh_token()
    assert len(token) >= 43  # 256 bits, base64url
    assert digest == hash_refresh_token(token)
    assert token.encode() not in digest
    assert new_refresh_token()[0] != token
