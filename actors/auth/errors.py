"""Auth errors. Each survives pickling, because it crosses Ray process boundaries."""

from __future__ import annotations


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


class InvalidInputError(AuthError):
    """A field breaks the registration rules."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


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
