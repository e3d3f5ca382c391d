"""Key material: signing keys (Ed25519 JWKs), secret boxes (AES-256-GCM), refresh tokens."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "EdDSA"
_BOX_VERSION = b"v1"


class SecretBox:
    """AES-256-GCM with a key id in every ciphertext, so keys can rotate.

    Ciphertext layout: ``v1`` | key id length (1 byte) | key id | 12-byte nonce | sealed.
    New data is sealed with ``current``; any key still listed can open old data.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current key must be one of the keys")
        if any(len(k) != 32 for k in keys.values()):
            raise ValueError("AES-256-GCM keys are 32 bytes")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = current

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` (authenticated, not encrypted)."""
        kid = self._current.encode()
        nonce = os.urandom(12)
        sealed = self._keys[self._current].encrypt(nonce, plaintext, context)
        return _BOX_VERSION + bytes([len(kid)]) + kid + nonce + sealed

    def open(self, blob: bytes, context: bytes) -> bytes:
        """Decrypt what :meth:`seal` made; raises ``ValueError`` if it was tampered with."""
        if not blob.startswith(_BOX_VERSION):
            raise ValueError("unknown secret box format")
        size = blob[2]
        kid = blob[3 : 3 + size].decode()
        nonce, sealed = blob[3 + size : 15 + size], blob[15 + size :]
        if kid not in self._keys:
            raise ValueError("sealed with a key that is no longer configured")
        try:
            return self._keys[kid].decrypt(nonce, sealed, context)
        except Exception as exc:  # cryptography's InvalidTag carries no message
            raise ValueError("secret box failed to open") from exc


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 signing key: its id, private PEM, and public JWK (JSON)."""

    kid: str
    private_pem: bytes
    public_jwk: str

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key with a random id."""
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        kid = secrets.token_hex(8)
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
        return cls(kid, pem, json.dumps(jwk, sort_keys=True))

    def sign(self, claims: Mapping[str, object]) -> str:
        """A compact JWS of ``claims`` with this key's ``kid`` in the header."""
        return jwt.encode(
            dict(claims), self.private_pem, algorithm=ALGORITHM, headers={"kid": self.kid}
        )


def new_refresh_token() -> tuple[str, bytes]:
    """An opaque refresh token (256 random bits) and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    """SHA-256 of a refresh token: high-entropy secrets need no slow hash."""
    return hashlib.sha256(token.encode()).digest()
