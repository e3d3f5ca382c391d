"""Errors of the event side; each survives pickling across Ray processes."""

from __future__ import annotations


class EventsError(Exception):
    """Root of the event side's failures.

    Attributes:
        retryable: whether the same delivery may succeed if tried again.
    """

    retryable = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class MalformedEventError(EventsError):
    """An event whose payload breaks its contract: it fails every delivery (a poison event)."""


class ProviderError(EventsError):
    """The notification provider failed or did not answer in time."""

    retryable = True


class ProviderRejectedError(EventsError):
    """The provider refused the notification (a 4xx other than 429): retrying will not help."""


class UnknownDeadLetterError(EventsError):
    """No dead letter has this id."""

    def __init__(self, dead_letter_id: str = "") -> None:
        super().__init__(dead_letter_id)
        self.dead_letter_id = dead_letter_id
