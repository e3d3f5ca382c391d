"""Auth's pure rules: roles and permissions, emails, password strength, token lifetimes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from actors.auth.errors import InvalidInputError, UnknownRoleError, WeakPasswordError

EVERYTHING = "*"
BUILTIN_ROLES: Mapping[str, frozenset[str]] = {
    "customer": frozenset(
        {"orders:create", "orders:read:own", "orders:cancel:own", "wallets:read:own"}
    ),
    "catalog_manager": frozenset({"products:write", "inventory:restock"}),
    "finance": frozenset({"wallets:credit", "wallets:read", "orders:read"}),
    "operator": frozenset({"sagas:read", "sagas:manage", "events:manage", "cluster:read"}),
    "data_team": frozenset({"jobs:submit", "jobs:read", "orders:read"}),
    "admin": frozenset({EVERYTHING}),
}
EVERY_ROLE_MAY = frozenset({"products:read"})
DEFAULT_ROLES = ("customer",)
MAX_ACCESS_TTL_S = 15 * 60
MIN_PASSWORD = 12
MAX_PASSWORD = 256
MAX_RETRY_AFTER_S = 15 * 60
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_OWN = ":own"


@dataclass(frozen=True, slots=True)
class Rbac:
    """Roles and the permissions they grant (built-in roles, extended by configuration)."""

    roles: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(BUILTIN_ROLES))

    @classmethod
    def with_extra(cls, extra: Mapping[str, Iterable[str]]) -> Rbac:
        """Built-in roles plus configured ones (a configured role may extend a built-in)."""
        roles = dict(BUILTIN_ROLES)
        for name, permissions in extra.items():
            roles[name] = roles.get(name, frozenset()) | frozenset(permissions)
        return cls(roles)

    def known(self, role: str) -> bool:
        """Whether ``role`` is defined."""
        return role in self.roles

    def permissions(self, roles: Iterable[str]) -> frozenset[str]:
        """Everything the union of ``roles`` grants (unknown roles grant nothing)."""
        granted = set(EVERY_ROLE_MAY)
        for role in roles:
            granted |= self.roles.get(role, frozenset())
        return frozenset(granted)

    @staticmethod
    def allows(granted: frozenset[str], permission: str) -> bool:
        """Whether ``granted`` covers ``permission``; ``x:y`` covers ``x:y:own`` too."""
        if EVERYTHING in granted or permission in granted:
            return True
        return permission.endswith(_OWN) and permission[: -len(_OWN)] in granted


def normalize_email(email: str) -> str:
    """The stored form of an email address.

    Raises:
        InvalidInputError: it does not look like an address.
    """
    cleaned = email.strip().lower()
    if len(cleaned) > 254 or not _EMAIL.fullmatch(cleaned):
        raise InvalidInputError("email", "not a valid email address")
    return cleaned


def check_password(password: str, email: str, common: frozenset[str]) -> None:
    """Refuse passwords that are short, common, or the email itself.

    Raises:
        WeakPasswordError: the password is weak.
    """
    if len(password) < MIN_PASSWORD:
        raise WeakPasswordError(f"use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise WeakPasswordError(f"use at most {MAX_PASSWORD} characters")
    lowered = password.lower()
    if lowered in common or lowered == email.lower() or len(set(password)) < 4:
        raise WeakPasswordError("this password is too common; choose another")


def known_roles(rbac: Rbac, roles: Iterable[str]) -> tuple[str, ...]:
    """``roles`` without duplicates, in the order given.

    Raises:
        UnknownRoleError: one of them is not defined.
    """
    chosen: list[str] = []
    for role in roles:
        if not rbac.known(role):
            raise UnknownRoleError(role)
        if role not in chosen:
            chosen.append(role)
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """How failed logins are throttled.

    Attributes:
        window_s: failures are counted in a window this long, from the first one.
        slow_after: failures for one email after which each attempt is slowed.
        refuse_after: failures for one email after which attempts are refused.
        address_limit: failures from one client address after which attempts are refused.
        step_s: how much longer each slowed attempt waits than the one before.
        max_delay_s: the longest a slowed attempt waits.
    """

    window_s: int = 15 * 60
    slow_after: int = 10
    refuse_after: int = 20
    address_limit: int = 300
    step_s: float = 0.1
    max_delay_s: float = 2.0

    def delay_s(self, failures: int) -> float:
        """How long an attempt after ``failures`` failures waits before the password check."""
        if failures < self.slow_after:
            return 0.0
        return min(self.max_delay_s, self.step_s * (failures - self.slow_after + 1))

    def retry_after_s(self, remaining_ms: int) -> int:
        """Whole seconds until a window with ``remaining_ms`` left ends (1..window)."""
        return max(1, min(self.window_s, MAX_RETRY_AFTER_S, -(-remaining_ms // 1000)))


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Iterable[str]
) -> str | None:
    """The address failed logins are counted against, or ``None`` when it is unknown.

    The peer itself, unless it is a trusted proxy: then the last ``X-Forwarded-For`` entry
    (the one that proxy added). Without that header the client is unknown, rather than
    every client counting as the proxy.
    """
    peer_ip = _ip(peer)
    if peer_ip is None:
        return None
    if not any(peer_ip in ipaddress.ip_network(p, strict=False) for p in trusted_proxies):
        return str(peer_ip)
    last = (forwarded_for or "").rsplit(",", 1)[-1].strip()
    forwarded = _ip(last)
    return None if forwarded is None else str(forwarded)


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
