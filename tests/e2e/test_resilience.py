"""Losing Redis or PostgreSQL while serving: reads degrade, nothing is lost, all recovers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from actors.inventory.model import NewProduct
from cluster import bootstrap
from cluster.localstack import LocalStack
from cluster.settings import Settings

pytestmark = pytest.mark.slow


def eventually(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.25)


def ready(http: httpx.Client) -> bool:
    return http.get("/readyz").status_code == 200


def seeded(settings: Settings, cluster: list[Any], stack: LocalStack) -> str:
    """A new product, once the cache group has handled its ``ProductCreated``.

    The cache group drops a product's cached entry when it handles the product's events,
    so an entry filled before that would be evicted (a miss later, never a stale read).
    """
    sku = "RES-" + uuid.uuid4().hex[:10]
    product = NewProduct(sku, "Resilient", 700, "USD", 3)
    bootstrap.seed_products(settings, cluster, [product])
    engine = sa.create_engine(stack.database_url)
    unhandled = (
        "SELECT count(*) FROM outbox o WHERE o.aggregate_id = :sku AND NOT EXISTS"
        " (SELECT 1 FROM inbox i WHERE i.consumer = 'cache' AND i.event_id = o.id)"
    )
    try:

        def handled() -> bool:
            with engine.connect() as conn:
                return conn.execute(sa.text(unhandled), {"sku": sku}).scalar_one() == 0

        eventually(handled, 30)
    finally:
        engine.dispose()
    return sku


def test_flushing_redis_loses_nothing(
    http: httpx.Client, settings: Settings, cluster: list[Any], stack: LocalStack
) -> None:
    sku = seeded(settings, cluster, stack)
    before = http.get(f"/products/{sku}").json()
    redis.Redis.from_url(stack.redis_url).flushall()
    assert http.get(f"/products/{sku}").json() == before
    eventually(lambda: ready(http))  # the event streams and their groups come back


def test_reads_survive_a_redis_restart(
    http: httpx.Client, settings: Settings, cluster: list[Any], stack: LocalStack
) -> None:
    sku = seeded(settings, cluster, stack)
    expected = http.get(f"/products/{sku}").json()
    stack.redis.stop()
    try:
        during = http.get(f"/products/{sku}")  # served from PostgreSQL
        assert during.status_code == 200
        assert during.json() == expected
        readiness = http.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["redis"] == "fail"
    finally:
        stack.redis.start()
    eventually(lambda: ready(http))
    assert http.get(f"/products/{sku}").json() == expected


def test_reads_survive_a_postgres_restart(
    http: httpx.Client, settings: Settings, cluster: list[Any], stack: LocalStack
) -> None:
    cached = seeded(settings, cluster, stack)
    expected = http.get(f"/products/{cached}").json()  # now in the cache
    stack.postgres.stop()
    try:
        assert http.get(f"/products/{cached}").json() == expected  # the cache still answers
        miss = http.get(f"/products/NEVER-SEEN-{uuid.uuid4().hex[:8]}")
        assert miss.status_code == 503
        assert miss.headers["retry-after"] == "1"
        assert miss.headers["content-type"] == "application/problem+json"
        assert http.get("/readyz").json()["checks"]["postgres"] == "fail"
    finally:
        stack.postgres.start()
    eventually(lambda: ready(http))
    fresh = seeded(settings, cluster, stack)  # the shards write again after the restart
    eventually(lambda: http.get(f"/products/{fresh}").status_code == 200)
