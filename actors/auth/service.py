"""Auth use cases: registration, login, token refresh with reuse detection, sessions, keys.

Every change is committed to PostgreSQL first; the session/role cache in Redis is updated
after the commit and before the answer, and retried in the background when Redis is away.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

import jwt
import pyotp
import structlog
from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from actors.auth.crypto import (
    ALGORITHM,
    SecretBox,
    SigningKey,
    hash_refresh_token,
    new_refresh_token,
)
from actors.auth.errors import (
    EmailTakenError,
    InvalidCredentialsError,
    InvalidInputError,
    MfaStateError,
    SessionNotFoundError,
    TooManyAttemptsError,
    UnknownUserError,
)
from actors.auth.model import (
    DEFAULT_ROLES,
    LoginPolicy,
    Rbac,
    check_password,
    known_roles,
    normalize_email,
)
from storage.errors import ConflictError, StorageError
from storage.ports import LoginThrottle, SessionStateCache, UnitOfWork, UnitOfWorkFactory
from storage.records import AuditRecord, SessionRecord, SigningKeyRecord, UserRecord, UserState
from storage.telemetry import trace_id_var

log = structlog.get_logger(__name__)


class PasswordHasherPort(Protocol):
    """Slow, salted password hashing that does not block the event loop."""

    async def hash(self, password: str) -> str:
        """The encoded hash of ``password``."""
        ...

    async def verify(self, encoded: str | None, password: str) -> bool:
        """Whether ``password`` matches ``encoded`` (``None``: no such user, same cost)."""
        ...


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """Who issues tokens, for whom, and for how long.

    Attributes:
        issuer: the ``iss`` claim.
        audience: the ``aud`` claim.
        access_ttl_s: access token lifetime (at most 15 minutes).
        session_ttl_s: how long a session can be refreshed after it began.
    """

    issuer: str = "shoal"
    audience: str = "shoal-api"
    access_ttl_s: int = 900
    session_ttl_s: int = 30 * 24 * 3600
    mfa_audience: str = "shoal-mfa"
    mfa_ttl_s: int = 300


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What a successful login or refresh returns."""

    access_token: str
    refresh_token: str
    expires_in: int
    session_id: UUID


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """A right password of an account with MFA: the second factor is still needed."""

    mfa_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class MfaEnrollment:
    """A new TOTP secret awaiting activation, and its ``otpauth://`` URI for apps."""

    secret: str
    otpauth_uri: str


TOTP_STEP_S = 30
TOTP_DIGITS = 6
RECOVERY_CODES = 10
_MFA_LEEWAY_S = 5
_MFA_CLAIMS = ("iss", "aud", "sub", "jti", "iat", "exp", "typ")


def recovery_code_hash(code: str) -> bytes:
    """SHA-256 of a recovery code, ignoring case, spaces and dashes."""
    cleaned = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(cleaned.encode()).digest()


def new_recovery_code() -> str:
    """Ten random base32 characters (50 bits) in two groups of five."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()[:10]
    return f"{raw[:5]}-{raw[5:]}"


def totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now ±1) whose RFC 6238 code is ``code``, or ``None``."""
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S)
    current = int(now.timestamp()) // TOTP_STEP_S
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code.strip()):
            found = step
    return found


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def _throttle_keys(email: str, client: str | None) -> tuple[str, ...]:
    """The counters of a login attempt: its email first, then its address when known."""
    email_key = f"email:{email}"
    return (email_key,) if client is None else (email_key, f"addr:{client}")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.retryable


class AuthService:
    """Owns users, sessions, refresh tokens and signing keys.

    Args:
        uow: makes a unit of work (one PostgreSQL transaction) per call.
        cache: the session/role state the gateway reads on every request.
        hasher: password hashing.
        box: seals signing keys at rest.
        rbac: the roles that exist.
        policy: token lifetimes, issuer and audience.
        common_passwords: passwords refused at registration.
        clock: the current time.
        throttle: counts failed logins (``None``: no throttling, for tests of other rules).
        login_policy: when failed logins are slowed and refused.
        sleep: waits before a slowed login's password check (never blocks the loop).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        cache: SessionStateCache,
        hasher: PasswordHasherPort,
        *,
        box: SecretBox,
        rbac: Rbac,
        policy: TokenPolicy,
        common_passwords: frozenset[str],
        clock: Callable[[], datetime] = utcnow,
        throttle: LoginThrottle | None = None,
        login_policy: LoginPolicy = LoginPolicy(),  # noqa: B008 - frozen, shared safely
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._uow, self._cache, self._hasher, self._box = uow, cache, hasher, box
        self._rbac, self._policy, self._common, self._clock = rbac, policy, common_passwords, clock
        self._throttle, self._login_policy, self._sleep = throttle, login_policy, sleep
        self._key: SigningKey | None = None
        self._pending: set[asyncio.Task[None]] = set()

    # -- keys ---------------------------------------------------------------------------

    async def start(self) -> str:
        """Load the newest signing key, creating the first one; returns its ``kid``."""
        async with self._uow() as uow:
            published = await uow.signing_keys.published(self._clock(), self._key_grace)
        current = next((k for k in published if k.retired_at is None), None)
        if current is None:
            return await self.rotate_key()
        self._key = self._unseal(current)
        return current.kid

    async def rotate_key(self) -> str:
        """Sign with a new key from now on; the old one verifies until its tokens expire."""
        key, now = SigningKey.generate(), self._clock()
        sealed = self._box.seal(key.private_pem, key.kid.encode())
        async with self._uow() as uow:
            for old in await uow.signing_keys.published(now, self._key_grace):
                if old.retired_at is None:
                    await uow.signing_keys.retire(old.kid, now)
            await uow.signing_keys.add(SigningKeyRecord(key.kid, sealed, key.public_jwk, now, None))
            await self._audit(uow, "key_rotated", None, None, {"kid": key.kid})
            await uow.commit()
        self._key = key
        return key.kid

    @property
    def _key_grace(self) -> timedelta:
        return timedelta(seconds=self._policy.access_ttl_s + 60)

    def _unseal(self, record: SigningKeyRecord) -> SigningKey:
        pem = self._box.open(record.private_key, record.kid.encode())
        return SigningKey(record.kid, pem, record.public_jwk)

    # -- accounts -------------------------------------------------------------------------

    async def register(self, email: str, password: str, display_name: str | None) -> UserRecord:
        """Create a customer account.

        Raises:
            InvalidInputError: the email is malformed or the password weak.
            EmailTakenError: the email is registered already.
        """
        return await self._add_user(
            email, password, display_name, DEFAULT_ROLES, kind="user_registered", actor_id=None
        )

    async def create_user(
        self, email: str, password: str, roles: Sequence[str], actor_id: UUID | None = None
    ) -> UserRecord:
        """Create an account with the given roles (operators and admins, not self-service).

        Raises:
            InvalidInputError: the email is malformed, the password weak, or a role unknown.
            EmailTakenError: the email is registered already.
        """
        chosen = known_roles(self._rbac, roles)
        return await self._add_user(
            email, password, None, chosen, kind="user_created", actor_id=actor_id
        )

    async def _add_user(
        self,
        email: str,
        password: str,
        display_name: str | None,
        roles: tuple[str, ...],
        *,
        kind: str,
        actor_id: UUID | None,
    ) -> UserRecord:
        normalized = normalize_email(email)
        check_password(password, normalized, self._common)
        user = UserRecord(
            id=uuid.uuid4(),
            email=normalized,
            password_hash=await self._hasher.hash(password),
            display_name=display_name,
            roles=roles,
            disabled=False,
            created_at=self._clock(),
        )
        try:
            async with self._uow() as uow:
                user = await uow.users.add(user)
                await uow.wallets.add(user.id)  # every user has a wallet, empty at first
                await self._audit(uow, kind, user.id, actor_id, {"roles": list(roles)})
                await uow.commit()
        except ConflictError:
            raise EmailTakenError() from None
        return user

    async def me(self, user_id: UUID) -> UserRecord:
        """The caller's account.

        Raises:
            InvalidCredentialsError: it no longer exists or is disabled.
        """
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None or user.disabled:
            raise InvalidCredentialsError()
        return user

    # -- administration ---------------------------------------------------------------------

    async def set_roles(
        self, actor_id: UUID | None, user_id: UUID, roles: Sequence[str]
    ) -> UserRecord:
        """Replace a user's roles; the change applies to the user's next request.

        Raises:
            UnknownRoleError: a role is not defined.
            UnknownUserError: no such user.
        """
        chosen = known_roles(self._rbac, roles)
        async with self._uow() as uow:
            before = await uow.users.get(user_id)
            user = await uow.users.set_roles(user_id, chosen)
            if before is None or user is None:
                raise UnknownUserError(str(user_id))
            detail = {"roles": list(chosen), "before": list(before.roles)}
            await self._audit(uow, "role_changed", user_id, actor_id, detail)
            await uow.commit()
        await self._publish_user(user)
        return user

    async def grant_role(self, email: str, role: str, actor_id: UUID | None = None) -> UserRecord:
        """Add ``role`` to the user with ``email`` (nothing changes if it has it already).

        Raises:
            UnknownRoleError: the role is not defined.
            UnknownUserError: no user has that email.
        """
        known_roles(self._rbac, [role])
        user = await self._by_email(email)
        if role in user.roles:
            return user
        return await self.set_roles(actor_id, user.id, (*user.roles, role))

    async def disable_user(self, actor_id: UUID | None, user_id: UUID) -> None:
        """Refuse the user's logins from now on and revoke every session of theirs.

        Raises:
            UnknownUserError: no such user.
        """
        async with self._uow() as uow:
            user = await uow.users.set_disabled(user_id, True)
            if user is None:
                raise UnknownUserError(str(user_id))
            revoked = await uow.sessions.revoke_all_for_user(user_id, self._clock())
            detail = {"sessions_revoked": len(revoked)}
            await self._audit(uow, "user_disabled", user_id, actor_id, detail)
            await uow.commit()
        await self._publish(lambda: self._cache.sessions_revoked(revoked))
        await self._publish_user(user)

    async def disable_user_by_email(self, email: str, actor_id: UUID | None = None) -> None:
        """:meth:`disable_user` for the user with ``email``.

        Raises:
            UnknownUserError: no user has that email.
        """
        user = await self._by_email(email)
        await self.disable_user(actor_id, user.id)

    async def audit_events(
        self, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[AuditRecord]:
        """Security events, newest first, continuing after the ``(at, id)`` of a last one."""
        async with self._uow() as uow:
            return await uow.audit.list_page(after, limit)

    async def _by_email(self, email: str) -> UserRecord:
        try:
            normalized = normalize_email(email)
        except InvalidInputError:
            raise UnknownUserError(email) from None
        async with self._uow() as uow:
            user = await uow.users.by_email(normalized)
        if user is None:
            raise UnknownUserError(email)
        return user

    async def _publish_user(self, user: UserRecord) -> None:
        state = UserState(user.roles, user.disabled)
        await self._publish(lambda: self._cache.user_changed(user.id, state))

    # -- sessions -------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, user_agent: str, client: str | None = None
    ) -> IssuedTokens | MfaChallenge:
        """Check the password and open a session, unless failures say to refuse or slow down.

        With MFA on, a right password opens no session yet: the answer is an
        :class:`MfaChallenge` whose token :meth:`verify_mfa` takes with the second factor.

        Failed attempts are counted per submitted email (existing or not) and per client
        address (``None``: unknown, not counted); see :class:`LoginPolicy`.

        Raises:
            InvalidCredentialsError: wrong email or password, or a disabled account
                (indistinguishable, in the answer and in the time it takes).
            TooManyAttemptsError: too many failures; checked before the password.
            StorageUnavailableError: the failure counters cannot be read (fail closed).
        """
        try:
            normalized = normalize_email(email)
        except InvalidInputError:
            normalized = ""
        keys = _throttle_keys(normalized or email.strip().lower(), client)
        await self._admit(keys)
        async with self._uow() as uow:
            user = await uow.users.by_email(normalized) if normalized else None
        matches = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not matches or user.disabled:
            async with self._uow() as uow:
                await self._audit(uow, "login_failed", user.id if user else None, None, {})
                await uow.commit()
            raise InvalidCredentialsError()
        await self._succeeded(keys)
        if user.mfa_enabled:
            return self._challenge(user.id)
        async with self._uow() as uow:
            session, token = await self._open_session(uow, user, user_agent, "login_succeeded")
            await uow.commit()
        return await self._started(user, session, token)

    async def _open_session(
        self, uow: UnitOfWork, user: UserRecord, user_agent: str, kind: str
    ) -> tuple[SessionRecord, str]:
        now = self._clock()
        session = SessionRecord(uuid.uuid4(), user.id, now, now, user_agent[:256], None)
        token, token_hash = new_refresh_token()
        await uow.sessions.add(session)
        await uow.refresh_tokens.add(token_hash, session.id)
        await self._audit(uow, kind, user.id, user.id, {"session": str(session.id)})
        return session, token

    async def _started(self, user: UserRecord, session: SessionRecord, token: str) -> IssuedTokens:
        await self._publish(lambda: self._cache.session_started(session.id))
        await self._publish(
            lambda: self._cache.user_changed(user.id, UserState(user.roles, user.disabled))
        )
        return self._issue(user.id, session.id, token)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Spend a refresh token for a new pair; a spent one revokes its whole session.

        Raises:
            InvalidCredentialsError: the token is unknown, spent, or its session is over.
        """
        token_hash, now = hash_refresh_token(refresh_token), self._clock()
        new_token, new_hash = new_refresh_token()
        async with self._uow() as uow:
            session_id = await uow.refresh_tokens.spend(token_hash, now)
            if session_id is None:
                reused = await uow.refresh_tokens.session_of(token_hash)
                if reused is not None and await uow.sessions.revoke(reused, now):
                    await self._audit(
                        uow, "refresh_reuse_detected", None, None, {"session": str(reused)}
                    )
                    await uow.commit()
                    await self._publish(lambda: self._cache.sessions_revoked([reused]))
                raise InvalidCredentialsError()
            session = await uow.sessions.get(session_id)
            user = await uow.users.get(session.user_id) if session else None
            if session is None or user is None or not self._usable(session, user, now):
                raise InvalidCredentialsError()
            await uow.refresh_tokens.add(new_hash, session.id)
            await uow.sessions.touch(session.id, now)
            await uow.commit()
        return self._issue(user.id, session.id, new_token)

    def _usable(self, session: SessionRecord, user: UserRecord, now: datetime) -> bool:
        expired = now - session.created_at > timedelta(seconds=self._policy.session_ttl_s)
        return session.revoked_at is None and not user.disabled and not expired

    async def sessions(self, user_id: UUID) -> list[SessionRecord]:
        """The caller's open sessions, newest first."""
        async with self._uow() as uow:
            return await uow.sessions.active_for_user(user_id)

    async def revoke_session(
        self, user_id: UUID, session_id: UUID, kind: str = "session_revoked"
    ) -> None:
        """End one of the caller's sessions (logout ends the current one).

        Raises:
            SessionNotFoundError: it is not one of the caller's open sessions.
        """
        async with self._uow() as uow:
            session = await uow.sessions.get(session_id)
            if session is None or session.user_id != user_id:
                raise SessionNotFoundError(str(session_id))
            if await uow.sessions.revoke(session_id, self._clock()):
                await self._audit(uow, kind, user_id, user_id, {"session": str(session_id)})
                await uow.commit()
        await self._publish(lambda: self._cache.sessions_revoked([session_id]))

    # -- second factor ---------------------------------------------------------------------

    async def enroll_mfa(self, user_id: UUID) -> MfaEnrollment:
        """Make a new TOTP secret for the caller, to be confirmed by :meth:`activate_mfa`.

        Raises:
            MfaStateError: MFA is on already.
            InvalidCredentialsError: the account no longer exists or is disabled.
        """
        user = await self.me(user_id)
        if user.mfa_enabled:
            raise MfaStateError("MFA is on already; turn it off first.")
        secret = pyotp.random_base32()
        async with self._uow() as uow:
            if not await uow.users.set_pending_mfa(user_id, self._seal_mfa(user_id, secret)):
                raise InvalidCredentialsError()
            await self._audit(uow, "mfa_enrolled", user_id, user_id, {})
            await uow.commit()
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="shoal")
        return MfaEnrollment(secret, uri)

    async def activate_mfa(self, user_id: UUID, code: str) -> list[str]:
        """Turn MFA on with a code of the enrolled secret; return new recovery codes.

        The code that activates counts as used.

        Raises:
            MfaStateError: MFA is on already, or nothing was enrolled.
            InvalidInputError: the code is wrong (field ``code``).
        """
        async with self._uow() as uow:
            state = await uow.users.mfa_state(user_id)
            if state is None or state.enabled or state.pending_secret is None:
                raise MfaStateError("Nothing to activate: enroll first, with MFA off.")
            secret = self._open_mfa(user_id, state.pending_secret)
            step = totp_step(secret, code, self._clock())
            if step is None:
                await self._mfa_failed(uow, user_id, "activate")
                raise InvalidInputError("code", "wrong or expired code")
            if not await uow.users.activate_mfa(user_id, state.pending_secret, step):
                raise MfaStateError("MFA changed meanwhile; enroll again.")
            codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
            await uow.users.replace_recovery_codes(user_id, [recovery_code_hash(c) for c in codes])
            await self._audit(uow, "mfa_activated", user_id, user_id, {})
            await uow.commit()
        return codes

    async def disable_mfa(self, user_id: UUID, code: str | None, recovery_code: str | None) -> None:
        """Turn the caller's MFA off, proven by a current TOTP code or a recovery code.

        Raises:
            MfaStateError: MFA is off.
            InvalidInputError: the code is wrong (field ``code`` or ``recovery_code``).
        """
        async with self._uow() as uow:
            state = await uow.users.mfa_state(user_id)
            if state is None or not state.enabled or state.secret is None:
                raise MfaStateError("MFA is off.")
            if not await self._second_factor(uow, user_id, state.secret, code, recovery_code):
                await self._mfa_failed(uow, user_id, "disable")
                field = "code" if code is not None else "recovery_code"
                raise InvalidInputError(field, "wrong or used code")
            await uow.users.disable_mfa(user_id)
            await self._audit(uow, "mfa_disabled", user_id, user_id, {})
            await uow.commit()

    async def reset_mfa(self, actor_id: UUID | None, user_id: UUID) -> None:
        """Turn a user's MFA off (an administrator's reset, for a lost device).

        Raises:
            UnknownUserError: no such user.
        """
        async with self._uow() as uow:
            if not await uow.users.disable_mfa(user_id):
                raise UnknownUserError(str(user_id))
            await self._audit(uow, "mfa_reset", user_id, actor_id, {})
            await uow.commit()

    async def verify_mfa(
        self,
        mfa_token: str,
        code: str | None,
        recovery_code: str | None,
        user_agent: str,
    ) -> IssuedTokens:
        """Finish a login with MFA: the login's ``mfa_token`` and a TOTP or recovery code.

        Raises:
            InvalidCredentialsError: the token is not a valid MFA token, or the code is
                wrong or used already, or the account cannot log in.
        """
        user_id = await self._mfa_subject(mfa_token)
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            state = await uow.users.mfa_state(user_id)
            if user is None or user.disabled or state is None or state.secret is None:
                raise InvalidCredentialsError()
            if not state.enabled or not await self._second_factor(
                uow, user_id, state.secret, code, recovery_code
            ):
                await self._mfa_failed(uow, user_id, "login")
                raise InvalidCredentialsError()
            session, token = await self._open_session(uow, user, user_agent, "login_succeeded")
            await uow.commit()
        return await self._started(user, session, token)

    async def _second_factor(
        self,
        uow: UnitOfWork,
        user_id: UUID,
        sealed: bytes,
        code: str | None,
        recovery_code: str | None,
    ) -> bool:
        """Spend a TOTP code (its step, once) or a recovery code (once)."""
        if code is not None:
            step = totp_step(self._open_mfa(user_id, sealed), code, self._clock())
            return step is not None and await uow.users.use_totp_step(user_id, step)
        if recovery_code is not None:
            code_hash = recovery_code_hash(recovery_code)
            return await uow.users.use_recovery_code(user_id, code_hash, self._clock())
        return False

    async def _mfa_failed(self, uow: UnitOfWork, user_id: UUID, during: str) -> None:
        """Record a wrong second factor; committed on its own, as the caller then raises."""
        await self._audit(uow, "mfa_failed", user_id, user_id, {"during": during})
        await uow.commit()

    def _seal_mfa(self, user_id: UUID, secret: str) -> bytes:
        return self._box.seal(secret.encode(), b"mfa:" + user_id.bytes)

    def _open_mfa(self, user_id: UUID, sealed: bytes) -> str:
        return self._box.open(sealed, b"mfa:" + user_id.bytes).decode()

    def _challenge(self, user_id: UUID) -> MfaChallenge:
        assert self._key is not None, "start() loads the signing key"
        now = int(self._clock().timestamp())
        ttl = self._policy.mfa_ttl_s
        claims = {
            "iss": self._policy.issuer,
            "aud": self._policy.mfa_audience,
            "typ": "mfa",
            "sub": str(user_id),
            "jti": secrets.token_hex(16),
            "iat": now,
            "exp": now + ttl,
        }
        return MfaChallenge(self._key.sign(claims), ttl)

    async def _mfa_subject(self, mfa_token: str) -> UUID:
        """The user an MFA token of ours names; anything else is invalid credentials."""
        try:
            kid = jwt.get_unverified_header(mfa_token).get("kid")
        except jwt.PyJWTError:
            raise InvalidCredentialsError() from None
        async with self._uow() as uow:
            published = await uow.signing_keys.published(self._clock(), self._key_grace)
        record = next((k for k in published if k.kid == kid), None)
        if record is None:
            raise InvalidCredentialsError()
        try:
            claims = jwt.decode(
                mfa_token,
                jwt.PyJWK.from_json(record.public_jwk).key,
                algorithms=[ALGORITHM],
                audience=self._policy.mfa_audience,
                issuer=self._policy.issuer,
                # Expiry is checked against the service's clock below, not the wall clock.
                options={"require": list(_MFA_CLAIMS), "verify_exp": False, "verify_iat": False},
            )
            now = self._clock().timestamp()
            if claims["typ"] != "mfa" or not int(claims["exp"]) > now - _MFA_LEEWAY_S:
                raise InvalidCredentialsError()
            return UUID(str(claims["sub"]))
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidCredentialsError() from None

    # -- brute-force protection -------------------------------------------------------------

    async def _admit(self, keys: tuple[str, ...]) -> None:
        """Count this attempt; refuse it or slow it down by the failures before it."""
        if self._throttle is None:
            return
        policy = self._login_policy
        counts = await self._throttle.hit(keys, policy.window_s)
        limits = (policy.refuse_after, policy.address_limit)
        over = [c for c, limit in zip(counts, limits, strict=False) if c.count - 1 >= limit]
        if over:
            log.warning("login_refused", keys=len(over))
            raise TooManyAttemptsError(policy.retry_after_s(max(c.remaining_ms for c in over)))
        delay = policy.delay_s(counts[0].count - 1)
        if delay > 0:
            await self._sleep(delay)

    async def _succeeded(self, keys: tuple[str, ...]) -> None:
        """A correct password: the email starts afresh, and the address is not blamed."""
        if self._throttle is None:
            return
        try:
            await self._throttle.clear(keys[0])
            for key in keys[1:]:
                await self._throttle.forgive(key)
        except StorageError:
            log.warning("login_throttle_reset_failed")

    # -- helpers --------------------------------------------------------------------------

    def _issue(self, user_id: UUID, session_id: UUID, refresh_token: str) -> IssuedTokens:
        assert self._key is not None, "start() loads the signing key"
        now = int(self._clock().timestamp())
        ttl = self._policy.access_ttl_s
        claims = {
            "iss": self._policy.issuer,
            "aud": self._policy.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": secrets.token_hex(16),
            "iat": now,
            "exp": now + ttl,
        }
        return IssuedTokens(self._key.sign(claims), refresh_token, ttl, session_id)

    async def _audit(
        self,
        uow: UnitOfWork,
        kind: str,
        user_id: UUID | None,
        actor_id: UUID | None,
        detail: Mapping[str, object],
    ) -> None:
        record = AuditRecord(
            uuid.uuid4(),
            self._clock(),
            kind,
            user_id,
            actor_id,
            trace_id_var.get(),
            json.dumps(detail),
        )
        await uow.audit.add(record)

    async def _publish(self, write: Callable[[], Awaitable[None]]) -> None:
        """Apply a cache write now; when Redis is away keep retrying it in the background."""
        task = asyncio.ensure_future(self._retry(write))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=0.5)
        except TimeoutError:
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            log.warning("auth_cache_write_deferred")

    @staticmethod
    async def _retry(write: Callable[[], Awaitable[None]]) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=wait_random_exponential(multiplier=0.05, max=2),
        ):
            with attempt:
                await write()
