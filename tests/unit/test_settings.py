from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from cluster.localstack import StackError, _require_free
from cluster.settings import Settings
from storage.connections import PoolBudget
from storage.errors import ConnectionBudgetError


def test_default_budget_fits_the_local_server() -> None:
    settings = Settings()
    assert settings.pool_budget().peak <= settings.pg_max_connections


def test_pools_that_could_exceed_max_connections_are_refused() -> None:
    with pytest.raises(ValidationError, match="max_connections"):
        Settings(
            gateway_max_replicas=40, db_pool_size=10, db_max_overflow=10, pg_max_connections=100
        )


def test_budget_counts_every_process() -> None:
    budget = PoolBudget(pool_size=4, max_overflow=2, processes=10, reserved=5)
    assert budget.peak == 65
    budget.check(65)
    with pytest.raises(ConnectionBudgetError):
        budget.check(64)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_HTTP_PORT", "8123")
    monkeypatch.setenv("SHOAL_INGRESS", "proxy")
    settings = Settings()
    assert settings.base_url == "http://127.0.0.1:8123"
    assert settings.ingress == "proxy"


def test_unknown_ingress_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(ingress="nginx")  # type: ignore[arg-type]


def test_a_port_in_use_is_reported_with_the_setting_to_change() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .*SHOAL_PG_PORT"):
            _require_free(port, "PostgreSQL", "SHOAL_PG_PORT")


def test_tls_needs_both_files_and_the_python_proxy() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(tls_cert="c.pem", ingress="proxy")
    with pytest.raises(ValidationError, match="HAProxy ingress has no TLS"):
        Settings(tls_cert="c.pem", tls_key="k.pem", ingress="haproxy")
    settings = Settings(tls_cert="c.pem", tls_key="k.pem", ingress="proxy", http_port=8443)
    assert settings.base_url == "https://127.0.0.1:8443"
