"""Auth's pure rules: roles and permissions, emails, password strength, token lifetimes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from actors.auth.errors import InvalidInputError, WeakPasswordError

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
