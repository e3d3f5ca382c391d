"""The three consumer groups: the read-model projector, the cache invalidator, the notifier."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from actors.events.model import (
    ORDER_EVENTS,
    STOCK_EVENTS,
    newest_views,
    notifications,
    sales_deltas,
    skus_moved,
)
from actors.events.notifier import HttpNotificationProvider
from storage.breaker import RedisCircuitBreaker
from storage.ports import ProductCache
from storage.read_models import SqlProjection
from storage.records import EventRecord

PROJECTOR, CACHE, NOTIFIER = "projector", "cache", "notifier"
SUBSCRIPTIONS: dict[str, frozenset[str]] = {
    PROJECTOR: ORDER_EVENTS,
    CACHE: STOCK_EVENTS,
    NOTIFIER: frozenset({"OrderConfirmed"}),
}


class ProjectorHandler:
    """Keeps ``order_views`` and ``product_sales`` in the transaction of the inbox rows."""

    group = PROJECTOR
    subscribes: frozenset[str] | None = SUBSCRIPTIONS[PROJECTOR]

    async def ready(self) -> bool:
        """Always consuming."""
        return True

    async def begin(self, conn: AsyncConnection) -> None:
        """Wait for a rebuild first, so a rebuild and the projector never deadlock."""
        await SqlProjection(conn).lock()

    async def handle(self, conn: AsyncConnection, events: Sequence[EventRecord]) -> None:
        """Upsert the newest view of each order; add the sales the events moved."""
        projection = SqlProjection(conn)
        await projection.upsert_views(newest_views(events))
        await projection.add_sales(sales_deltas(events))


class CacheInvalidatorHandler:
    """Drops cached product entries whose stock the events moved."""

    group = CACHE
    subscribes: frozenset[str] | None = SUBSCRIPTIONS[CACHE]

    def __init__(self, cache: ProductCache) -> None:
        self._cache = cache

    async def ready(self) -> bool:
        """Always consuming."""
        return True

    async def begin(self, conn: AsyncConnection) -> None:
        """Nothing to prepare."""

    async def handle(self, conn: AsyncConnection, events: Sequence[EventRecord]) -> None:
        """Invalidate the SKUs (before the inbox commits; invalidating twice is harmless)."""
        skus = skus_moved(events)
        if skus:
            await self._cache.invalidate(skus)


class NotifierHandler:
    """Tells the provider about confirmed orders; pauses while the breaker is open."""

    group = NOTIFIER
    subscribes: frozenset[str] | None = SUBSCRIPTIONS[NOTIFIER]

    def __init__(self, provider: HttpNotificationProvider, breaker: RedisCircuitBreaker) -> None:
        self._provider = provider
        self._breaker = breaker

    async def ready(self) -> bool:
        """Consume unless the provider's breaker is open."""
        try:
            return await self._breaker.state() != "open"
        except Exception:  # Redis gone: the breaker starts closed again
            return True

    async def begin(self, conn: AsyncConnection) -> None:
        """Nothing to prepare."""

    async def handle(self, conn: AsyncConnection, events: Sequence[EventRecord]) -> None:
        """Send every confirmed order's notification; raise the first failure."""
        results = await asyncio.gather(
            *(self._provider.send(n) for n in notifications(events)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
