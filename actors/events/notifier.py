"""The notification provider over HTTP: retries with full jitter behind a shared breaker.

Each delivery is tried up to ``attempts`` times (tenacity, exponential backoff with full
jitter); every try goes through the circuit breaker, so a provider outage opens it for all
replicas, after which tries are refused at once and the notifier stops consuming. The
event id is the ``Idempotency-Key``: a try the provider handled but did not answer in time
is not notified twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from actors.events.errors import ProviderError, ProviderRejectedError
from actors.events.model import Notification, traceparent
from storage.breaker import RedisCircuitBreaker
from storage.telemetry import NOTIFICATIONS


@dataclass(frozen=True, slots=True)
class NotifierPolicy:
    """Where the provider is and how hard to try.

    Attributes:
        url: the provider's base URL (``POST {url}/notifications``).
        timeout_s: one try's timeout; a stalled provider fails the try.
        attempts: tries per delivery.
        backoff_s: the first backoff's upper bound; it doubles per try (full jitter).
        backoff_max_s: the largest backoff.
        concurrency: deliveries in flight at once; a batch of events never opens more
            connections than this to the provider.
    """

    url: str
    timeout_s: float = 2.0
    attempts: int = 4
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    concurrency: int = 8


class HttpNotificationProvider:
    """Sends notifications; each call raises unless the provider accepted it."""

    def __init__(
        self, client: httpx.AsyncClient, breaker: RedisCircuitBreaker, policy: NotifierPolicy
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._policy = policy
        self._slots = asyncio.Semaphore(policy.concurrency)

    async def send(self, notification: Notification) -> None:
        """Deliver one notification.

        Raises:
            CircuitOpenError: the breaker is open (not retried here).
            ProviderError: every try failed.
            ProviderRejectedError: the provider refused it.
        """
        async with self._slots:
            await self._send(notification)

    async def _send(self, notification: Notification) -> None:
        p = self._policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(p.attempts),
            wait=wait_random_exponential(multiplier=p.backoff_s, max=p.backoff_max_s),
            retry=retry_if_exception_type(ProviderError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._breaker.call(lambda: self._post(notification))

    async def _post(self, n: Notification) -> None:
        headers = {
            "Idempotency-Key": str(n.event_id),
            "X-Request-ID": n.trace_id,
            "traceparent": traceparent(n.trace_id, str(n.event_id)),
        }
        url = self._policy.url.rstrip("/") + "/notifications"
        try:
            response = await self._client.post(
                url, json=n.body(), headers=headers, timeout=self._policy.timeout_s
            )
        except httpx.HTTPError as exc:
            NOTIFICATIONS.labels("error").inc()
            raise ProviderError(type(exc).__name__) from None
        status = response.status_code
        NOTIFICATIONS.labels(f"{status // 100}xx").inc()
        if status >= 500 or status == 429:
            raise ProviderError(f"provider answered {status}")
        if status >= 400:
            raise ProviderRejectedError(f"provider refused with {status}")
