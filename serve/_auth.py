"""Who is calling: access tokens verified in the replica, sessions and roles checked per request.

No actor is crossed: the signature is checked with public keys read from PostgreSQL and
kept in the replica, then one Redis round trip says whether the session is still open
and what roles the user has now. When Redis cannot answer or has forgotten, PostgreSQL
(the truth) answers and Redis is refilled.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
import structlog
from starlette.requests import Request

from actors.auth.crypto import ALGORITHM
from actors.auth.model import Rbac, client_address
from serve._ratelimit import LocalLimiter, RateLimitedError
from storage.errors import StorageError
from storage.ports import UnitOfWorkFactory
from storage.ratelimit import RateDecision, RateSpec, RedisRateLimiter, rate_key
from storage.records import UserState
from storage.session_cache import RedisSessionCache

_KID = re.compile(r"[0-9a-f]{16}")
_REQUIRED = ["iss", "aud", "sub", "sid", "jti", "iat", "exp"]
_KEY_REFRESH_S = 5.0
_VERIFIED_CACHE = 10_000
DEFAULT_GROUP = "default"
AUTH_GROUP = "auth"
log = structlog.get_logger(__name__)


class UnauthenticatedError(Exception):
    """No valid access token, or its session is over: 401 with ``WWW-Authenticate``."""


class ForbiddenError(Exception):
    """Authenticated, but the route's permission is not granted: 403."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    user_id: UUID
    session_id: UUID
    roles: tuple[str, ...]
    permissions: frozenset[str]


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: who it is, its rate verdict, and the Redis values it prefetched."""

    principal: Principal
    decision: RateDecision
    prefetched: Mapping[str, bytes | None]


@dataclass(frozen=True, slots=True)
class _State:
    decision: RateDecision
    active: bool
    user: UserState
    prefetched: Mapping[str, bytes | None]


class _PublicKeys:
    """Signing keys' public halves by ``kid``, reloaded at most every few seconds."""

    def __init__(self, uow: UnitOfWorkFactory, grace: timedelta) -> None:
        self._uow, self._grace = uow, grace
        self._keys: dict[str, Any] = {}
        self._jwks: list[dict[str, Any]] = []
        self._loaded_at = float("-inf")

    async def get(self, kid: str) -> Any | None:
        if kid not in self._keys and time.monotonic() - self._loaded_at > _KEY_REFRESH_S:
            await self.reload()
        return self._keys.get(kid)

    async def jwks(self) -> list[dict[str, Any]]:
        if time.monotonic() - self._loaded_at > _KEY_REFRESH_S:
            await self.reload()
        return self._jwks

    async def reload(self) -> None:
        async with self._uow() as uow:
            records = await uow.signing_keys.published(datetime.now(UTC), self._grace)
        jwks = [json.loads(r.public_jwk) for r in records]
        self._keys = {jwk["kid"]: jwt.PyJWK(jwk).key for jwk in jwks}
        self._jwks, self._loaded_at = jwks, time.monotonic()


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or refuses it."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        cache: RedisSessionCache,
        rbac: Rbac,
        *,
        limiter: RedisRateLimiter,
        limits: Mapping[str, RateSpec],
        issuer: str,
        audience: str,
        key_grace: timedelta,
    ) -> None:
        self._uow, self._cache, self._rbac = uow, cache, rbac
        self._limiter, self._limits, self._local = limiter, limits, LocalLimiter()
        self._issuer, self._audience = issuer, audience
        self.keys = _PublicKeys(uow, key_grace)
        self._verified: OrderedDict[str, tuple[UUID, UUID, int]] = OrderedDict()

    async def principal(
        self, authorization: str | None, group: str = DEFAULT_GROUP, prefetch: Sequence[str] = ()
    ) -> Admission:
        """The caller, after signature, claims, session, account and rate checks.

        ``prefetch`` names Redis keys the route will read: they come back in the same round
        trip (absent from the answer when Redis could not be asked).

        Raises:
            UnauthenticatedError: the token, session or account is not valid.
            RateLimitedError: the caller is over the group's limit.
        """
        user_id, session_id = await self._verify(_bearer(authorization))
        state = await self._state(user_id, session_id, group, prefetch)
        if not state.active or state.user.disabled:
            raise UnauthenticatedError()
        if not state.decision.allowed:
            raise RateLimitedError(state.decision)
        roles = state.user.roles
        principal = Principal(user_id, session_id, roles, self._rbac.permissions(roles))
        return Admission(principal, state.decision, state.prefetched)

    async def limit_anonymous(self, address: str | None, group: str) -> RateDecision | None:
        """Rate-limit a public route by client address (``None``: address unknown, no limit).

        Fails closed: when Redis cannot answer, the error propagates (503).

        Raises:
            RateLimitedError: the address is over the group's limit.
        """
        if address is None:
            return None
        decision, _ = await self._limiter.hit(rate_key(group, address), self._limits[group])
        if not decision.allowed:
            raise RateLimitedError(decision)
        return decision

    async def _verify(self, token: str) -> tuple[UUID, UUID]:
        known = self._verified.get(token)
        if known is not None and known[2] > time.time():
            return known[0], known[1]
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if (
                header.get("alg") != ALGORITHM
                or not isinstance(kid, str)
                or not _KID.fullmatch(kid)
            ):
                raise UnauthenticatedError()
            key = await self.keys.get(kid)
            if key is None:
                raise UnauthenticatedError()
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED},
                leeway=5,
            )
            user_id, session_id = UUID(str(claims["sub"])), UUID(str(claims["sid"]))
        except (jwt.PyJWTError, ValueError, TypeError):
            raise UnauthenticatedError() from None
        self._remember(token, user_id, session_id, int(claims["exp"]))
        return user_id, session_id

    def _remember(self, token: str, user_id: UUID, session_id: UUID, exp: int) -> None:
        self._verified[token] = (user_id, session_id, exp)
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)

    async def _state(
        self, user_id: UUID, session_id: UUID, group: str, prefetch: Sequence[str]
    ) -> _State:
        """One Redis round trip: a GCRA step, the session, the roles, and the prefetch keys."""
        key, spec = rate_key(group, str(user_id)), self._limits[group]
        try:
            decision, values = await self._limiter.hit(
                key, spec, [*self._cache.keys(session_id, user_id), *prefetch]
            )
        except StorageError:
            log.warning("session_cache_unavailable")
            decision = self._local.hit(key, spec, group)
            active, user = await self._from_database(user_id, session_id, fill=False)
            return _State(decision, active, user, {})
        prefetched = dict(zip(prefetch, values[2:], strict=True))
        cached = self._cache.decode(values[0], values[1])
        if cached.session_active is None or cached.user is None:
            active, user = await self._from_database(user_id, session_id, fill=True)
            return _State(decision, active, user, prefetched)
        return _State(decision, cached.session_active, cached.user, prefetched)

    async def _from_database(
        self, user_id: UUID, session_id: UUID, fill: bool
    ) -> tuple[bool, UserState]:
        async with self._uow() as uow:
            session = await uow.sessions.get(session_id)
            user = await uow.users.get(user_id)
        if user is None or session is None or session.user_id != user_id:
            raise UnauthenticatedError()
        active, state = session.revoked_at is None, UserState(user.roles, user.disabled)
        if fill:
            try:
                await self._cache.fill(session_id, active, user_id, state)
            except StorageError:
                log.warning("session_cache_fill_failed")
        return active, state


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise UnauthenticatedError()
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        raise UnauthenticatedError()
    return token


PUBLIC = "public"
AUTHENTICATED = "authenticated"


class Require:
    """A route's declared permission, as a FastAPI dependency returning the caller.

    ``Require(PUBLIC)`` admits anyone (and returns ``None``); ``Require(AUTHENTICATED)``
    any valid session; anything else is a ``resource:action[:own]`` permission. The app
    refuses to start with a route that declares none (deny by default). Authenticated
    routes are rate-limited per user in ``group``; public routes only when a ``group`` is
    given, per client address. The verdict goes to ``request.state.rate_limit`` for the
    ``RateLimit-*`` headers. ``prefetch`` names the Redis key the route will read, so it
    arrives with the session check (``request.state.prefetched``) in one round trip.
    """

    def __init__(
        self,
        permission: str,
        group: str | None = None,
        prefetch: Callable[[Request], str | None] | None = None,
    ) -> None:
        self.permission = permission
        self.group = group
        self.prefetch = prefetch

    async def __call__(self, request: Request) -> Principal | None:
        authenticator: Authenticator = request.app.state.authenticator
        if self.permission == PUBLIC:
            if self.group is not None:
                address = request_client(request)
                request.state.rate_limit = await authenticator.limit_anonymous(address, self.group)
            return None
        wanted = self.prefetch(request) if self.prefetch else None
        admission = await authenticator.principal(
            request.headers.get("authorization"),
            self.group or DEFAULT_GROUP,
            () if wanted is None else (wanted,),
        )
        principal = admission.principal
        request.state.rate_limit = admission.decision
        request.state.prefetched = admission.prefetched
        if self.permission != AUTHENTICATED and not Rbac.allows(
            principal.permissions, self.permission
        ):
            raise ForbiddenError()
        return principal


def request_client(request: Request) -> str | None:
    """The calling client's address, as :func:`actors.auth.model.client_address` resolves it."""
    peer = request.client.host if request.client else None
    return client_address(
        peer, request.headers.get("x-forwarded-for"), request.app.state.trusted_proxies
    )


def declared_permission(route: Any) -> str | None:
    """The permission a FastAPI route declares through :class:`Require`, if any."""
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, Require):
            return dependency.call.permission
    return None
