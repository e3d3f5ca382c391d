"""The storage error tree: driver errors are translated into these once, at this boundary."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every storage failure.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    retryable = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class StorageUnavailableError(StorageError):
    """The database or cache could not be reached, or the connection was lost mid-call."""

    retryable = True


class StorageTimeoutError(StorageError):
    """A statement or connection attempt took longer than allowed."""

    retryable = True


class ConflictError(StorageError):
    """A uniqueness or integrity rule refused the write."""


class SerializationFailureError(StorageError):
    """PostgreSQL aborted the transaction for concurrent access; running it again is safe."""

    retryable = True


class ConnectionBudgetError(StorageError):
    """The configured pools could exceed the server's ``max_connections``."""


class StaleWriteError(StorageError):
    """A row changed since the writer read it: reload it and decide again."""

    retryable = True
