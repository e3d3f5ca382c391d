"""PostgreSQL adapters of the auth ports: users, sessions, refresh tokens, keys and audit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage._tables import (
    audit_events,
    recovery_codes,
    refresh_tokens,
    sessions,
    signing_keys,
    users,
)
from storage._translate import translated
from storage.records import AuditRecord, MfaState, SessionRecord, SigningKeyRecord, UserRecord

_USER = (
    users.c.id,
    users.c.email,
    users.c.password_hash,
    users.c.display_name,
    users.c.roles,
    users.c.disabled,
    users.c.created_at,
    users.c.mfa_enabled,
)
_SESSION = (
    sessions.c.id,
    sessions.c.user_id,
    sessions.c.created_at,
    sessions.c.last_used_at,
    sessions.c.user_agent,
    sessions.c.revoked_at,
)
_KEY = (
    signing_keys.c.kid,
    signing_keys.c.private_key,
    signing_keys.c.public_jwk,
    signing_keys.c.created_at,
    signing_keys.c.retired_at,
)
_AUDIT = (
    audit_events.c.id,
    audit_events.c.at,
    audit_events.c.kind,
    audit_events.c.user_id,
    audit_events.c.actor_id,
    audit_events.c.trace_id,
    audit_events.c.detail,
)


def _user(row: Any) -> UserRecord:
    id_, email, password_hash, display_name, roles, disabled, created_at, mfa_enabled = row
    return UserRecord(
        id_, email, password_hash, display_name, tuple(roles), disabled, created_at, mfa_enabled
    )


class SqlUserRepository:
    """Users in PostgreSQL, read and written on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, user_id: UUID) -> UserRecord | None:
        """Return the user, or ``None`` when no such id exists."""
        async with translated():
            row = (await self._conn.execute(select(*_USER).where(users.c.id == user_id))).first()
        return None if row is None else _user(row)

    async def by_email(self, email: str) -> UserRecord | None:
        """Return the user with exactly this email, or ``None``."""
        async with translated():
            row = (await self._conn.execute(select(*_USER).where(users.c.email == email))).first()
        return None if row is None else _user(row)

    async def add(self, user: UserRecord) -> UserRecord:
        """Insert a new user; the database sets ``created_at``.

        Raises:
            ConflictError: the email or the id exists already.
        """
        values = {
            "id": user.id,
            "email": user.email,
            "password_hash": user.password_hash,
            "display_name": user.display_name,
            "roles": list(user.roles),
            "disabled": user.disabled,
        }
        async with translated():
            row = (await self._conn.execute(insert(users).values(values).returning(*_USER))).one()
        return _user(row)

    async def set_roles(self, user_id: UUID, roles: tuple[str, ...]) -> UserRecord | None:
        """Replace the user's roles; return the changed user, or ``None`` if unknown."""
        return await self._update(user_id, roles=list(roles))

    async def set_disabled(self, user_id: UUID, disabled: bool) -> UserRecord | None:
        """Disable or enable the user; return the changed user, or ``None`` if unknown."""
        return await self._update(user_id, disabled=disabled)

    async def mfa_state(self, user_id: UUID) -> MfaState | None:
        """Return the user's second factor, or ``None`` when no such id exists."""
        query = select(
            users.c.mfa_enabled,
            users.c.mfa_secret,
            users.c.mfa_pending_secret,
            users.c.mfa_last_step,
        ).where(users.c.id == user_id)
        async with translated():
            row = (await self._conn.execute(query)).first()
        return None if row is None else MfaState(*row)

    async def set_pending_mfa(self, user_id: UUID, sealed: bytes) -> bool:
        """Keep ``sealed`` as the secret awaiting activation; ``False`` if the user is unknown."""
        return await self._update(user_id, mfa_pending_secret=sealed) is not None

    async def activate_mfa(self, user_id: UUID, sealed: bytes, step: int) -> bool:
        """Turn MFA on with the pending secret ``sealed``, ``step`` counting as used."""
        query = (
            update(users)
            .where(
                users.c.id == user_id,
                users.c.mfa_enabled.is_(False),
                users.c.mfa_pending_secret == sealed,
            )
            .values(
                mfa_secret=sealed,
                mfa_pending_secret=None,
                mfa_enabled=True,
                mfa_last_step=step,
                updated_at=func.now(),
            )
            .returning(users.c.id)
        )
        async with translated():
            row = (await self._conn.execute(query)).first()
        return row is not None

    async def use_totp_step(self, user_id: UUID, step: int) -> bool:
        """Accept TOTP time ``step`` once, if later than every step accepted before."""
        # The row lock of the UPDATE makes a concurrent use of the same step match nothing.
        query = (
            update(users)
            .where(
                users.c.id == user_id,
                users.c.mfa_enabled.is_(True),
                or_(users.c.mfa_last_step.is_(None), users.c.mfa_last_step < step),
            )
            .values(mfa_last_step=step)
            .returning(users.c.id)
        )
        async with translated():
            row = (await self._conn.execute(query)).first()
        return row is not None

    async def disable_mfa(self, user_id: UUID) -> bool:
        """Turn MFA off, forgetting secrets and recovery codes; ``False`` if unknown."""
        changed = await self._update(
            user_id,
            mfa_enabled=False,
            mfa_secret=None,
            mfa_pending_secret=None,
            mfa_last_step=None,
        )
        async with translated():
            await self._conn.execute(
                delete(recovery_codes).where(recovery_codes.c.user_id == user_id)
            )
        return changed is not None

    async def replace_recovery_codes(self, user_id: UUID, hashes: Sequence[bytes]) -> None:
        """Replace every recovery code of the user by unused ``hashes``."""
        async with translated():
            await self._conn.execute(
                delete(recovery_codes).where(recovery_codes.c.user_id == user_id)
            )
            if hashes:
                rows = [{"user_id": user_id, "code_hash": h} for h in hashes]
                await self._conn.execute(insert(recovery_codes), rows)

    async def use_recovery_code(self, user_id: UUID, code_hash: bytes, at: datetime) -> bool:
        """Mark an unused recovery code of the user used; ``True`` when this call did."""
        query = (
            update(recovery_codes)
            .where(
                recovery_codes.c.user_id == user_id,
                recovery_codes.c.code_hash == code_hash,
                recovery_codes.c.used_at.is_(None),
            )
            .values(used_at=at)
            .returning(recovery_codes.c.user_id)
        )
        async with translated():
            row = (await self._conn.execute(query)).first()
        return row is not None

    async def _update(self, user_id: UUID, **values: Any) -> UserRecord | None:
        query = (
            update(users)
            .where(users.c.id == user_id)
            .values(updated_at=func.now(), **values)
            .returning(*_USER)
        )
        async with translated():
            row = (await self._conn.execute(query)).first()
        return None if row is None else _user(row)


class SqlSessionRepository:
    """Login sessions in PostgreSQL; a revoked session stays revoked."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, session: SessionRecord) -> SessionRecord:
        """Insert a new session with the record's timestamps.

        Raises:
            ConflictError: the id exists already, or the user does not.
        """
        values = {
            "id": session.id,
            "user_id": session.user_id,
            "created_at": session.created_at,
            "last_used_at": session.last_used_at,
            "user_agent": session.user_agent,
            "revoked_at": session.revoked_at,
        }
        query = insert(sessions).values(values).returning(*_SESSION)
        async with translated():
            row = (await self._conn.execute(query)).one()
        return SessionRecord(*row)

    async def get(self, session_id: UUID) -> SessionRecord | None:
        """Return the session, revoked or not, or ``None`` when no such id exists."""
        query = select(*_SESSION).where(sessions.c.id == session_id)
        async with translated():
            row = (await self._conn.execute(query)).first()
        return None if row is None else SessionRecord(*row)

    async def active_for_user(self, user_id: UUID) -> list[SessionRecord]:
        """Return the user's sessions that are not revoked, newest first."""
        query = (
            select(*_SESSION)
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            .order_by(sessions.c.created_at.desc(), sessions.c.id.desc())
        )
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return [SessionRecord(*r) for r in rows]

    async def touch(self, session_id: UUID, at: datetime) -> None:
        """Set the session's ``last_used_at`` to ``at``; an unknown id is ignored."""
        query = update(sessions).where(sessions.c.id == session_id).values(last_used_at=at)
        async with translated():
            await self._conn.execute(query)

    async def revoke(self, session_id: UUID, at: datetime) -> bool:
        """Revoke the session unless it is revoked already; ``True`` when this call did."""
        query = (
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
            .returning(sessions.c.id)
        )
        async with translated():
            row = (await self._conn.execute(query)).first()
        return row is not None

    async def revoke_all_for_user(self, user_id: UUID, at: datetime) -> list[UUID]:
        """Revoke every active session of the user; return the ids this call revoked."""
        query = (
            update(sessions)
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
            .returning(sessions.c.id)
        )
        async with translated():
            ids = (await self._conn.execute(query)).scalars().all()
        return list(ids)


class SqlRefreshTokenRepository:
    """Refresh token hashes in PostgreSQL; spending one is a single conditional update."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, token_hash: bytes, session_id: UUID) -> None:
        """Record a new, unspent token of ``session_id``.

        Raises:
            ConflictError: the hash exists already, or the session does not.
        """
        query = insert(refresh_tokens).values(token_hash=token_hash, session_id=session_id)
        async with translated():
            await self._conn.execute(query)

    async def spend(self, token_hash: bytes, at: datetime) -> UUID | None:
        """Mark an unspent token spent; return its session, or ``None`` if unknown or spent."""
        # The row lock of the UPDATE makes a concurrent second spend wait, then match nothing.
        query = (
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.spent_at.is_(None))
            .values(spent_at=at)
            .returning(refresh_tokens.c.session_id)
        )
        async with translated():
            session_id: UUID | None = (await self._conn.execute(query)).scalar()
        return session_id

    async def session_of(self, token_hash: bytes) -> UUID | None:
        """Return the session of a token, spent or not, or ``None`` when it is unknown."""
        query = select(refresh_tokens.c.session_id).where(refresh_tokens.c.token_hash == token_hash)
        async with translated():
            session_id: UUID | None = (await self._conn.execute(query)).scalar()
        return session_id


class SqlSigningKeyRepository:
    """Token signing keys in PostgreSQL."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, key: SigningKeyRecord) -> SigningKeyRecord:
        """Insert a new key with the record's timestamps.

        Raises:
            ConflictError: the kid exists already.
        """
        values = {
            "kid": key.kid,
            "private_key": key.private_key,
            "public_jwk": key.public_jwk,
            "created_at": key.created_at,
            "retired_at": key.retired_at,
        }
        async with translated():
            row = (
                await self._conn.execute(insert(signing_keys).values(values).returning(*_KEY))
            ).one()
        return SigningKeyRecord(*row)

    async def published(self, now: datetime, grace: timedelta) -> list[SigningKeyRecord]:
        """Return the keys not retired, or retired less than ``grace`` before ``now``."""
        retired_at = signing_keys.c.retired_at
        query = (
            select(*_KEY)
            .where(or_(retired_at.is_(None), retired_at > now - grace))
            .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid.desc())
        )
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return [SigningKeyRecord(*r) for r in rows]

    async def retire(self, kid: str, at: datetime) -> None:
        """Retire the key at ``at`` unless it is retired already."""
        query = (
            update(signing_keys)
            .where(signing_keys.c.kid == kid, signing_keys.c.retired_at.is_(None))
            .values(retired_at=at)
        )
        async with translated():
            await self._conn.execute(query)


class SqlAuditLog:
    """Security events in PostgreSQL; ``detail`` is kept as the JSON string it was given."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, record: AuditRecord) -> None:
        """Append an event.

        Raises:
            ConflictError: the id exists already.
        """
        values = {
            "id": record.id,
            "at": record.at,
            "kind": record.kind,
            "user_id": record.user_id,
            "actor_id": record.actor_id,
            "trace_id": record.trace_id,
            "detail": record.detail,
        }
        async with translated():
            await self._conn.execute(insert(audit_events).values(values))

    async def list_before(self, before: datetime | None, limit: int) -> list[AuditRecord]:
        """Return up to ``limit`` events, newest first, strictly before ``before`` when given."""
        query = (
            select(*_AUDIT)
            .order_by(audit_events.c.at.desc(), audit_events.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(audit_events.c.at < before)
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return [AuditRecord(*r) for r in rows]

    async def list_page(self, after: tuple[datetime, UUID] | None, limit: int) -> list[AuditRecord]:
        """Return up to ``limit`` events, newest first by ``(at, id)``, after ``after``."""
        query = (
            select(*_AUDIT)
            .order_by(audit_events.c.at.desc(), audit_events.c.id.desc())
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(audit_events.c.at, audit_events.c.id) < tuple_(*after))
        async with translated():
            rows = (await self._conn.execute(query)).all()
        return [AuditRecord(*r) for r in rows]
