"""`shoal up`/`down`/`status` as a user runs them: a second stack, over TLS (default proxy)."""

from __future__ import annotations

import ipaddress
import os
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cluster.localstack import StackPaths
from tests.conftest import _free_port
from tests.e2e.conftest import STRONG_PASSWORD

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
        "SHOAL_REPLICA_PORT_MIN": str(_free_port(16, below=65535 - 10000)),
        "SHOAL_REPLICA_PORT_SPAN": "16",
        "SHOAL_GATEWAY_MAX_REPLICAS": "1",
    }
    full = {**os.environ, **values}
    yield full
    subprocess.run([SHOAL, "down", "--purge"], env=full, capture_output=True, check=False)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def register_and_login(client: httpx.Client, url: str) -> dict[str, str]:
    email = "cli-user@example.com"
    client.post(f"{url}/auth/register", json={"email": email, "password": STRONG_PASSWORD})
    login = client.post(f"{url}/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert login.status_code == 200, login.text
    tokens: dict[str, str] = login.json()
    return tokens


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


def test_up_status_down_up_over_tls_keeps_data_and_leaves_nothing_behind(
    env: dict[str, str], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    url = f"https://127.0.0.1:{env['SHOAL_HTTP_PORT']}"
    started = shoal(env, "up", "--demo", "--tls-cert", str(cert), "--tls-key", str(key))
    assert started.returncode == 0, started.stderr[-2000:]
    assert started.stdout.strip().splitlines()[-1] == url
    tls = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10)
    tls.headers["authorization"] = "Bearer " + register_and_login(tls, url)["access_token"]
    product = tls.get(f"{url}/products/DEMO-TEA-001")
    assert product.status_code == 200
    assert product.headers["strict-transport-security"].startswith("max-age=")
    assert tls.get(f"{url}/readyz").json()["checks"]["actors"] == "ok"
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
        httpx.get(url.replace("https", "http") + "/healthz", timeout=5)

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
        tls.get(f"{url}/healthz", timeout=2)

    restarted = shoal(env, "up")  # remembers --tls-cert/--tls-key
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    kept = tls.get(f"{url}/products/DEMO-TEA-001")
    assert kept.status_code == 200
    assert kept.json()["available"] == product.json()["available"]

    purged = shoal(env, "down", "--purge")
    assert purged.returncode == 0
    assert not Path(env["SHOAL_HOME"]).exists()
    assert stack_processes(env) == []
