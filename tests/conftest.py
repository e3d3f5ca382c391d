"""Session fixtures: one private PostgreSQL + Redis, and one Ray cluster with the app, per run.

The stack is started by the project's own local-stack code on free loopback ports under a
temporary state directory, so a developer's `make up` stack is left alone.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.localstack import LOOPBACK_ONLY, LocalStack
from cluster.settings import Settings
from tests.provider_sim import ProviderSim

# Ray reads this when imported; the test modules import it (directly or not) after this.
os.environ.update(LOOPBACK_ONLY)


def _free_port(span: int = 1, below: int = 65535) -> int:
    """A port p with p..p+span-1 free on loopback, all under ``below``."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + span > below:
            continue
        if all(_is_free(port + i) for i in range(span)):
            return port
    raise RuntimeError("no free port range")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def provider() -> Iterator[ProviderSim]:
    """The external notification provider, simulated: it can be told to fail or stall."""
    sim = ProviderSim().start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def settings(provider: ProviderSim) -> Settings:
    home = Path(tempfile.mkdtemp(prefix="shoal-test-"))
    return Settings(
        home=home,
        notify_url=provider.url,
        breaker_open_s=2,  # a recovered provider is tried again soon
        http_port=_free_port(),
        pg_port=_free_port(),
        redis_port=_free_port(),
        ray_port=_free_port(3),
        dashboard_port=_free_port(),
        haproxy_stats_port=_free_port(),
        haproxy_metrics_port=_free_port(),
        serve_fallback_port=_free_port(),
        replica_port_min=_free_port(16, below=65535 - 10000),
        replica_port_span=16,
        partitions=16,
        inventory_shards=2,  # more than the default: ownership and handoff across shards
        wallet_shards=2,
        order_shards=2,
        gateway_min_replicas=1,
        gateway_max_replicas=2,
        cache_absent_ttl_s=30,
        login_window_s=20,  # failed logins are forgotten in 20 s, not 15 min
        rate_limit_per_s=20,  # small enough for a test to run out of its burst
        rate_limit_burst=40,
    )


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[LocalStack]:
    """PostgreSQL and Redis, migrated; everything this run started is stopped and deleted."""
    from cluster import bootstrap

    local = LocalStack(settings)
    try:
        local.start_data()
        bootstrap.migrate_database(local)
        yield local
    finally:
        local.stop(purge=True)


@pytest.fixture(scope="session")
def cluster(settings: Settings, stack: LocalStack) -> Iterator[list[object]]:
    """A Ray head with the inventory shards and the gateway; yields the shard handles."""
    import ray

    from cluster import bootstrap

    stack.start_ray()
    bootstrap.connect(settings, stack)
    handles = bootstrap.start_actors(settings, stack)
    bootstrap.deploy_gateway(settings, stack)
    bootstrap.wait_ready(settings)
    try:
        yield handles
    finally:
        ray.shutdown()
