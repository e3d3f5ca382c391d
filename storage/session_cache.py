"""Session and role state in Redis: what the gateway checks on every authenticated request.

PostgreSQL holds the truth (sessions.revoked_at, users.roles/disabled); these keys are a
cache of it. The owner writes them after each commit; a reader that finds nothing falls
back to PostgreSQL and fills the key only if it is still absent, so a fill can never undo
a revocation written meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import redis.asyncio as aioredis

from storage._translate import translated
from storage.records import UserState

_ACTIVE = b"a"
_REVOKED = b"r"


def _session_key(session_id: UUID) -> str:
    return f"shoal:session:{session_id}"


def _user_key(user_id: UUID) -> str:
    return f"shoal:user:{user_id}"


def _encode_user(user: UserState) -> bytes:
    """``0|role,role`` (``1|`` when disabled)."""
    return (b"1|" if user.disabled else b"0|") + ",".join(user.roles).encode()


def _decode_user(raw: bytes) -> UserState:
    flag, _, roles = raw.partition(b"|")
    return UserState(tuple(r for r in roles.decode().split(",") if r), flag == b"1")


@dataclass(frozen=True, slots=True)
class CachedAuthState:
    """One lookup's answer: ``None`` where Redis had nothing (ask PostgreSQL)."""

    session_active: bool | None
    user: UserState | None


class RedisSessionCache:
    """Session liveness and user roles, one pipelined round trip per request."""

    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    @staticmethod
    def keys(session_id: UUID, user_id: UUID) -> tuple[str, str]:
        """The session and user keys, for a caller that reads them in its own round trip."""
        return _session_key(session_id), _user_key(user_id)

    @staticmethod
    def decode(session: bytes | None, user: bytes | None) -> CachedAuthState:
        """What the values of :meth:`keys` say (``None`` where Redis had nothing)."""
        return CachedAuthState(
            None if session is None else session == _ACTIVE,
            None if user is None else _decode_user(user),
        )

    async def fill(self, session_id: UUID, active: bool, user_id: UUID, user: UserState) -> None:
        """Cache what PostgreSQL said, without overwriting anything written meanwhile."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            pipe.set(
                _session_key(session_id), _ACTIVE if active else _REVOKED, ex=self._ttl_s, nx=True
            )
            pipe.set(_user_key(user_id), _encode_user(user), ex=self._ttl_s, nx=True)
            await pipe.execute()

    async def session_started(self, session_id: UUID) -> None:
        """Mark a new session active."""
        async with translated():
            await self._redis.set(_session_key(session_id), _ACTIVE, ex=self._ttl_s)

    async def sessions_revoked(self, session_ids: Sequence[UUID]) -> None:
        """Mark sessions revoked (the marker outlives any token of theirs)."""
        if not session_ids:
            return
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.set(_session_key(session_id), _REVOKED, ex=self._ttl_s)
            await pipe.execute()

    async def user_changed(self, user_id: UUID, user: UserState) -> None:
        """Publish a user's current roles and state; the next request sees them."""
        async with translated():
            await self._redis.set(_user_key(user_id), _encode_user(user), ex=self._ttl_s)
