"""`shoal up`/`down`/`status` as a user runs them: a second stack, in the default-proxy mode."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from cluster.localstack import StackPaths
from tests.conftest import _free_port

pytestmark = pytest.mark.slow
SHOAL = str(Path(sys.executable).with_name("shoal"))


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    home = Path(tempfile.mkdtemp(prefix="shoal-cli-"))
    values = {
        "SHOAL_HOME": str(home),
        "SHOAL_INGRESS": "proxy",
        "SHOAL_HTTP_PORT": str(_free_port()),
        "SHOAL_PG_PORT": str(_free_port()),
        "SHOAL_REDIS_PORT": str(_free_port()),
        "SHOAL_RAY_PORT": str(_free_port(3)),
        "SHOAL_DASHBOARD_PORT": str(_free_port()),
        "SHOAL_HAPROXY_STATS_PORT": str(_free_port()),
        "SHOAL_HAPROXY_METRICS_PORT": str(_free_port()),
        "SHOAL_SERVE_FALLBACK_PORT": str(_free_port()),
        "SHOAL_REPLICA_PORT_MIN": str(_free_port(16)),
        "SHOAL_REPLICA_PORT_SPAN": "16",
        "SHOAL_GATEWAY_MAX_REPLICAS": "1",
    }
    full = {**os.environ, **values}
    yield full
    subprocess.run([SHOAL, "down", "--purge"], env=full, capture_output=True, check=False)


def shoal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHOAL, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def stack_processes(env: dict[str, str]) -> list[str]:
    """Command lines of any process of this stack: PostgreSQL, Redis, Ray, HAProxy."""
    marks = (
        env["SHOAL_HOME"],
        str(StackPaths(Path(env["SHOAL_HOME"]).resolve()).haproxy),
        f"127.0.0.1:{env['SHOAL_REDIS_PORT']}",
        f"127.0.0.1:{env['SHOAL_RAY_PORT']}",
    )
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
        except psutil.Error:
            continue
        if any(mark in cmdline for mark in marks):
            found.append(cmdline[:120])
    return found


def test_up_status_down_up_keeps_data_and_leaves_nothing_behind(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{env['SHOAL_HTTP_PORT']}"
    started = shoal(env, "up", "--demo")
    assert started.returncode == 0, started.stderr[-2000:]
    assert started.stdout.strip().splitlines()[-1] == url
    product = httpx.get(f"{url}/products/DEMO-TEA-001", timeout=10)
    assert product.status_code == 200
    assert httpx.get(f"{url}/readyz", timeout=10).json()["checks"]["actors"] == "ok"

    again = shoal(env, "up")
    assert again.returncode == 0
    assert "already running" in again.stderr

    status = shoal(env, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    assert '"pid"' in status.stdout
    assert '"shards"' in status.stdout

    stopped = shoal(env, "down")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert stack_processes(env) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=2)

    restarted = shoal(env, "up")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    kept = httpx.get(f"{url}/products/DEMO-TEA-001", timeout=10)
    assert kept.status_code == 200
    assert kept.json()["available"] == product.json()["available"]

    purged = shoal(env, "down", "--purge")
    assert purged.returncode == 0
    assert not Path(env["SHOAL_HOME"]).exists()
    assert stack_processes(env) == []
