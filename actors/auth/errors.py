"""Auth errors. Each survives pickling, because it crosses Ray process boundaries."""

from __future__ import annotations

from actors._ops import FieldError


class AuthError(Exception):
    """Root of auth failures.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    retryable = False


class InvalidCredentialsError(AuthError):
    """Wrong email or password, a disabled account, or an unusable refresh token.

    One type for all of them, so a caller cannot tell which it was.
    """


class InvalidInputError(FieldError, AuthError):
    """A field breaks the registration rules."""


class WeakPasswordError(InvalidInputError):
    """The password is too short or too common."""

    def __init__(self, message: str) -> None:
        super().__init__("password", message)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.message,))


class EmailTakenError(AuthError):
    """An account with that email exists already."""


class SessionNotFoundError(AuthError):
    """No such session among the caller's own."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id


class UnknownUserError(AuthError):
    """No user with that id or email."""

    def __init__(self, user: str) -> None:
        super().__init__(user)
        self.user = user


class UnknownRoleError(InvalidInputError):
    """A role that is not defined (built in or configured)."""

    def __init__(self, role: str) -> None:
        super().__init__("roles", f"unknown role {role!r}")
        self.role = role

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.role,))


class TooManyAttemptsError(AuthError):
    """Too many failed logins for this email or client address; try again later.

    Attributes:
        retry_after_s: whole seconds until the counting window ends (at least 1).
    """

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"Too many failed logins; retry in {self.retry_after_s} s."


class MfaStateError(AuthError):
    """MFA cannot change that way now: it is on already, or nothing was enrolled, or it is off."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
