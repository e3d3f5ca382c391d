"""Rate-limit verdicts on the wire, and the per-replica limiter used while Redis is away."""

from __future__ import annotations

import time
from collections import OrderedDict

from storage.ratelimit import RateDecision, RateSpec, gcra_step
from storage.telemetry import RATE_LIMIT_FALLBACKS

_LOCAL_KEYS = 50_000


class RateLimitedError(Exception):
    """Over the limit: 429 with ``Retry-After`` and the ``RateLimit-*`` headers."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(decision)
        self.decision = decision


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (and ``Retry-After``)."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_s),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_s)
    return headers


class LocalLimiter:
    """GCRA buckets in this replica only: a fallback, counted by a metric when used."""

    def __init__(self) -> None:
        self._tats: OrderedDict[str, int] = OrderedDict()

    def hit(self, key: str, spec: RateSpec, group: str) -> RateDecision:
        """Take one request from ``key``'s local bucket."""
        RATE_LIMIT_FALLBACKS.labels(group).inc()
        now = int(time.monotonic() * 1000)
        decision, tat = gcra_step(now, self._tats.pop(key, None), spec)
        self._tats[key] = tat
        if len(self._tats) > _LOCAL_KEYS:
            self._tats.popitem(last=False)
        return decision
