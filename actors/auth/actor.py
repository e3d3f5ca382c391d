"""The auth actor: a thin Ray shell around :class:`AuthService`.

One named, detached actor owns every credential change; the gateway verifies tokens
itself and calls this actor only for logins, refreshes and session changes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from actors._shell import LazyService, measured
from actors.auth.crypto import SecretBox
from actors.auth.model import LoginPolicy, Rbac
from actors.auth.passwords import Argon2Hasher, common_passwords
from actors.auth.service import (
    AuthService,
    IssuedTokens,
    MfaChallenge,
    MfaEnrollment,
    TokenPolicy,
)
from storage.connections import ConnectionConfig, Connections
from storage.login_throttle import RedisLoginThrottle
from storage.products import SqlUnitOfWorkFactory
from storage.records import AuditRecord, SessionRecord, UserRecord
from storage.session_cache import RedisSessionCache
from storage.telemetry import configure_logging, trace_id_var

T = TypeVar("T")
AUTH_ACTOR_NAME = "auth"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Everything the auth actor needs, as plain picklable values.

    Attributes:
        connections: PostgreSQL and Redis.
        policy: token issuer, audience and lifetimes.
        secret_keys: AES-256 keys (base64) that seal signing keys at rest, by key id.
        current_secret_key: the key id new secrets are sealed with.
        extra_roles: configured roles added to the built-in ones.
        log_level: structlog level.
        login_window_s: how long failed logins are counted.
    """

    connections: ConnectionConfig
    policy: TokenPolicy
    secret_keys: dict[str, str]
    current_secret_key: str
    extra_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    log_level: str = "INFO"
    login_window_s: int = 15 * 60


class AuthActor:
    """Single writer of users, sessions, refresh tokens and signing keys."""

    def __init__(self, config: AuthConfig) -> None:
        configure_logging(config.log_level, component=AUTH_ACTOR_NAME)
        self._config = config
        self._conn = Connections(config.connections)
        self._service = LazyService(self._build)

    async def _build(self) -> AuthService:
        cfg = self._config
        keys = {kid: base64.b64decode(k) for kid, k in cfg.secret_keys.items()}
        service = AuthService(
            SqlUnitOfWorkFactory(self._conn.engine),
            RedisSessionCache(self._conn.redis, cfg.policy.session_ttl_s),
            Argon2Hasher(),
            box=SecretBox(keys, cfg.current_secret_key),
            rbac=Rbac.with_extra(cfg.extra_roles),
            policy=cfg.policy,
            common_passwords=await asyncio.to_thread(common_passwords),
            throttle=RedisLoginThrottle(self._conn.redis),
            login_policy=LoginPolicy(window_s=cfg.login_window_s),
        )
        await service.start()
        return service

    async def _call(
        self, method: str, trace_id: str, call: Callable[[AuthService], Awaitable[T]]
    ) -> T:
        token = trace_id_var.set(trace_id)
        try:
            service = await self._service.get()
            return await measured(AUTH_ACTOR_NAME, method, lambda: call(service))
        finally:
            trace_id_var.reset(token)

    async def info(self) -> str:
        """Answer once the signing key is loaded (readiness)."""
        await self._service.get()
        return "ok"

    async def register(
        self, email: str, password: str, display_name: str | None, trace_id: str = "-"
    ) -> UserRecord:
        """See :meth:`AuthService.register`."""
        return await self._call(
            "register", trace_id, lambda s: s.register(email, password, display_name)
        )

    async def login(
        self,
        email: str,
        password: str,
        user_agent: str,
        trace_id: str = "-",
        *,
        client: str | None = None,
    ) -> IssuedTokens | MfaChallenge:
        """See :meth:`AuthService.login`; ``client`` is the address the gateway resolved."""
        return await self._call(
            "login", trace_id, lambda s: s.login(email, password, user_agent, client)
        )

    async def refresh(self, refresh_token: str, trace_id: str = "-") -> IssuedTokens:
        """See :meth:`AuthService.refresh`."""
        return await self._call("refresh", trace_id, lambda s: s.refresh(refresh_token))

    async def revoke_session(
        self, user_id: UUID, session_id: UUID, kind: str, trace_id: str = "-"
    ) -> None:
        """See :meth:`AuthService.revoke_session`."""
        await self._call(
            "revoke_session", trace_id, lambda s: s.revoke_session(user_id, session_id, kind)
        )

    async def sessions(self, user_id: UUID, trace_id: str = "-") -> list[SessionRecord]:
        """See :meth:`AuthService.sessions`."""
        return await self._call("sessions", trace_id, lambda s: s.sessions(user_id))

    async def me(self, user_id: UUID, trace_id: str = "-") -> UserRecord:
        """See :meth:`AuthService.me`."""
        return await self._call("me", trace_id, lambda s: s.me(user_id))

    async def rotate_key(self, trace_id: str = "-") -> str:
        """See :meth:`AuthService.rotate_key`."""
        return await self._call("rotate_key", trace_id, lambda s: s.rotate_key())

    async def create_user(
        self, email: str, password: str, roles: list[str], trace_id: str = "-"
    ) -> UserRecord:
        """See :meth:`AuthService.create_user`."""
        return await self._call(
            "create_user", trace_id, lambda s: s.create_user(email, password, roles)
        )

    async def grant_role(self, email: str, role: str, trace_id: str = "-") -> UserRecord:
        """See :meth:`AuthService.grant_role`."""
        return await self._call("grant_role", trace_id, lambda s: s.grant_role(email, role))

    async def disable_user_by_email(self, email: str, trace_id: str = "-") -> None:
        """See :meth:`AuthService.disable_user_by_email`."""
        await self._call(
            "disable_user_by_email", trace_id, lambda s: s.disable_user_by_email(email)
        )

    async def set_roles(
        self, actor_id: UUID, user_id: UUID, roles: list[str], trace_id: str = "-"
    ) -> UserRecord:
        """See :meth:`AuthService.set_roles`."""
        return await self._call(
            "set_roles", trace_id, lambda s: s.set_roles(actor_id, user_id, roles)
        )

    async def disable_user(self, actor_id: UUID, user_id: UUID, trace_id: str = "-") -> None:
        """See :meth:`AuthService.disable_user`."""
        await self._call("disable_user", trace_id, lambda s: s.disable_user(actor_id, user_id))

    async def audit_events(
        self, after: tuple[datetime, UUID] | None, limit: int, trace_id: str = "-"
    ) -> list[AuditRecord]:
        """See :meth:`AuthService.audit_events`."""
        return await self._call("audit_events", trace_id, lambda s: s.audit_events(after, limit))

    async def verify_mfa(
        self,
        mfa_token: str,
        code: str | None,
        recovery_code: str | None,
        user_agent: str,
        trace_id: str = "-",
    ) -> IssuedTokens:
        """See :meth:`AuthService.verify_mfa`."""
        return await self._call(
            "verify_mfa",
            trace_id,
            lambda s: s.verify_mfa(mfa_token, code, recovery_code, user_agent),
        )

    async def enroll_mfa(self, user_id: UUID, trace_id: str = "-") -> MfaEnrollment:
        """See :meth:`AuthService.enroll_mfa`."""
        return await self._call("enroll_mfa", trace_id, lambda s: s.enroll_mfa(user_id))

    async def activate_mfa(self, user_id: UUID, code: str, trace_id: str = "-") -> list[str]:
        """See :meth:`AuthService.activate_mfa`."""
        return await self._call("activate_mfa", trace_id, lambda s: s.activate_mfa(user_id, code))

    async def disable_mfa(
        self, user_id: UUID, code: str | None, recovery_code: str | None, trace_id: str = "-"
    ) -> None:
        """See :meth:`AuthService.disable_mfa`."""
        await self._call(
            "disable_mfa", trace_id, lambda s: s.disable_mfa(user_id, code, recovery_code)
        )

    async def reset_mfa(self, actor_id: UUID, user_id: UUID, trace_id: str = "-") -> None:
        """See :meth:`AuthService.reset_mfa`."""
        await self._call("reset_mfa", trace_id, lambda s: s.reset_mfa(actor_id, user_id))
