"""Cached product reads over HTTP, fed by the inventory shard actors."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import httpx
import ray

from actors.inventory.model import NewProduct
from cluster import bootstrap
from cluster.settings import Settings
from tests.e2e.conftest import metric


def _create(settings: Settings, shards: list[Any], sku: str, stock: int = 10) -> None:
    bootstrap.seed_products(settings, shards, [NewProduct(sku, f"Item {sku}", 1500, "USD", stock)])


def _sku() -> str:
    return "E2E-" + uuid.uuid4().hex[:10]


def test_seeded_product_is_served_and_the_second_read_is_a_cache_hit(
    http: httpx.Client, settings: Settings, cluster: list[Any]
) -> None:
    sku = _sku()
    _create(settings, cluster, sku, stock=42)
    misses = metric(http, "shoal_cache_requests_total", outcome="miss")
    first = http.get(f"/products/{sku}")
    hits = metric(http, "shoal_cache_requests_total", outcome="hit")
    second = http.get(f"/products/{sku}")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    body = first.json()
    assert {k: body[k] for k in ("sku", "price", "currency", "available")} == {
        "sku": sku,
        "price": 1500,
        "currency": "USD",
        "available": 42,
    }
    assert metric(http, "shoal_cache_requests_total", outcome="miss") >= misses + 1
    assert metric(http, "shoal_cache_requests_total", outcome="hit") >= hits + 1
    assert 0 < metric(http, "shoal_cache_hit_ratio", cache="products") <= 1


def test_etag_revalidation_answers_304(
    http: httpx.Client, settings: Settings, cluster: list[Any]
) -> None:
    sku = _sku()
    _create(settings, cluster, sku)
    etag = http.get(f"/products/{sku}").headers["etag"]
    response = http.get(f"/products/{sku}", headers={"if-none-match": f'"other", {etag}'})
    assert response.status_code == 304
    assert response.content == b""
    assert http.get(f"/products/{sku}", headers={"if-none-match": '"stale"'}).status_code == 200


def test_unknown_product_is_404_and_a_later_create_is_visible_at_once(
    http: httpx.Client, settings: Settings, cluster: list[Any]
) -> None:
    sku = _sku()
    missing = http.get(f"/products/{sku}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    _create(settings, cluster, sku)  # the owner invalidates the cached "absent" entry
    assert http.get(f"/products/{sku}").status_code == 200


def test_listing_pages_through_products_with_cursors(
    http: httpx.Client, settings: Settings, cluster: list[Any]
) -> None:
    stem = "LST-" + uuid.uuid4().hex[:6]
    skus = sorted(f"{stem}-{i}" for i in range(5))
    for sku in skus:
        _create(settings, cluster, sku)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/products", params=params)
        assert page.status_code == 200
        seen += [p["sku"] for p in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [s for s in seen if s.startswith(stem)] == skus
    assert seen == sorted(seen)


def test_a_killed_shard_is_restarted_by_ray_and_reloads_from_postgres(
    http: httpx.Client, settings: Settings, cluster: list[Any]
) -> None:
    sku = _sku()
    _create(settings, cluster, sku)
    layout = bootstrap.partitioning(settings)
    shard = cluster[layout.owner_of(sku)]
    before = ray.get(shard.info.remote(), timeout=30)
    os.kill(before.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    (after,) = bootstrap.shard_infos([shard], 60)  # asks again while Ray restarts it
    assert after.pid != before.pid
    assert after.entities == before.entities
    # The restarted owner still knows the product: creating it again is a no-op, not a conflict.
    _create(settings, cluster, sku)
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert http.get(f"/products/{sku}").status_code == 200
