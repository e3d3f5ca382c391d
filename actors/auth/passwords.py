"""Password hashing with argon2id, kept off the event loop, and the common-password list."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS


class Argon2Hasher:
    """argon2id hashes (argon2-cffi's defaults), computed in a worker thread."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verifying against this when the email is unknown makes both cases take as long.
        self._dummy = self._hasher.hash("shoal-timing-equaliser")

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """Whether ``password`` matches ``encoded``; ``None`` burns the same time and fails."""
        target = encoded if encoded is not None else self._dummy
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(ok) and encoded is not None


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's bundled list, lower-cased (offline)."""
    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])
