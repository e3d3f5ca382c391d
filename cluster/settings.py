"""Settings: the only reader of the environment (``SHOAL_*`` variables)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.connections import PoolBudget
from storage.errors import ConnectionBudgetError


class Settings(BaseSettings):
    """Every knob of a shoal deployment, with local-stack defaults."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".shoal"), description="state directory of the local stack")
    database_url: str | None = Field(default=None, description="use this PostgreSQL instead")
    redis_url: str | None = Field(default=None, description="use this Redis instead")
    ray_address: str | None = Field(default=None, description="use this Ray cluster instead")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    ingress: Literal["haproxy", "proxy"] = "haproxy"
    pg_port: int = Field(default=54329, ge=1, le=65535)
    redis_port: int = Field(default=63799, ge=1, le=65535)
    ray_port: int = Field(default=63790, ge=1, le=65535)
    dashboard_port: int = Field(default=8265, ge=1, le=65535)
    haproxy_stats_port: int = Field(default=8404, ge=1, le=65535)
    haproxy_metrics_port: int = Field(default=9101, ge=1, le=65535)
    serve_fallback_port: int = Field(
        default=8500, ge=1, le=64535, description="Serve's fallback proxy (HTTP; gRPC is +1000)"
    )
    replica_port_min: int = Field(
        default=30000, ge=1024, description="first HTTP port of replicas (gRPC +10000)"
    )
    replica_port_span: int = Field(default=1000, ge=8, le=5000)
    ray_num_cpus: int | None = Field(default=None, ge=1)

    namespace: str = "shoal"
    app_name: str = "shoal"
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    gateway_min_replicas: int = Field(default=1, ge=1)
    gateway_max_replicas: int = Field(default=2, ge=1)
    gateway_target_ongoing_requests: float = Field(default=16, gt=0)
    gateway_max_ongoing_requests: int = Field(default=64, ge=1)
    gateway_max_queued_requests: int = Field(default=256, ge=1)
    gateway_max_in_flight: int = Field(default=48, ge=1)
    gateway_num_cpus: float = Field(default=0.1, ge=0, le=1)
    gateway_access_log: bool = Field(
        default=False, description="Serve's per-request log line (costs throughput)"
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    token_issuer: str = Field(default="shoal", min_length=1)
    token_audience: str = Field(default="shoal-api", min_length=1)
    access_token_ttl_s: int = Field(default=900, ge=30, le=900)
    session_ttl_s: int = Field(default=30 * 24 * 3600, ge=3600)
    auth_secret_keys: dict[str, str] = Field(
        default_factory=dict,
        description="AES-256 keys (base64) sealing secrets at rest, by id; "
        "the local stack generates one when empty",
    )
    auth_current_key: str | None = Field(default=None, description="id of the key to seal with")
    extra_roles: dict[str, list[str]] = Field(
        default_factory=dict, description="roles added to (or extending) the built-in ones"
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate: serve HTTPS")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [IPvAnyNetwork("127.0.0.1")],  # type: ignore[operator]
        description="peers whose last X-Forwarded-For address is taken as the client's",
    )
    rate_limit_per_s: float = Field(
        default=50, gt=0, description="requests per second per user on authenticated routes"
    )
    rate_limit_burst: int = Field(default=100, ge=1, description="burst per user")
    auth_rate_limit_per_s: float = Field(
        default=2, gt=0, description="per client address on register/login/refresh"
    )
    auth_rate_limit_burst: int = Field(default=20, ge=1)
    login_window_s: int = Field(
        default=900, ge=1, le=900, description="how long failed logins are counted"
    )
    admin_email: str | None = Field(default=None, description="`up` ensures this admin user")
    admin_password: SecretStr | None = Field(
        default=None, description="password of admin_email when `up` creates it"
    )

    partitions: int = Field(default=64, ge=1)
    # One shard per kind batches best on a small node: every extra shard splits the same
    # writes into smaller commits and adds a process competing for the same cores.
    inventory_shards: int = Field(default=1, ge=1, description="inventory shard actors")
    wallet_shards: int = Field(default=1, ge=1, description="wallet shard actors")
    order_shards: int = Field(default=1, ge=1, description="orchestrator shard actors")
    saga_timeout_s: float = Field(
        default=30, gt=0, description="PlaceOrder fails with 'timeout' after this long"
    )
    saga_step_timeout_s: float = Field(default=5, gt=0, description="one try of one saga step")
    actor_num_cpus: float = Field(default=0.05, ge=0, le=1)

    pg_max_connections: int = Field(default=200, ge=20)
    db_pool_size: int = Field(default=4, ge=1)
    db_max_overflow: int = Field(default=4, ge=0)
    db_reserved_connections: int = Field(default=20, ge=0)
    db_statement_timeout_ms: int = Field(default=5000, ge=100)

    cache_ttl_s: float = Field(default=300, gt=0)
    cache_ttl_jitter: float = Field(default=0.1, ge=0, lt=1)
    cache_absent_ttl_s: float = Field(default=5, gt=0)

    # events: outbox relay, Redis Streams consumer groups, notifier, retention
    event_partitions: int = Field(default=4, ge=1, le=256, description="event streams")
    event_batch: int = Field(default=200, ge=1, le=5000, description="events per relay commit")
    event_read_count: int = Field(default=100, ge=1, le=1000, description="XREADGROUP COUNT")
    event_linger_ms: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="the relay and each consumer wait this long after a batch that was not full",
    )
    event_claim_idle_ms: int = Field(
        default=5000, ge=50, description="pending this long: claimed by another consumer"
    )
    event_max_deliveries: int = Field(default=5, ge=1, description="then a dead letter")
    event_republish_after_s: float = Field(
        default=30, gt=0, description="unrecorded events this old are checked against Redis"
    )
    event_sweep_interval_s: float = Field(default=5, gt=0)
    event_retention_s: float = Field(default=3 * 24 * 3600, gt=0)
    idempotency_retention_s: float = Field(default=48 * 3600, ge=24 * 3600)
    janitor_interval_s: float = Field(default=300, gt=0)
    notify_url: str | None = Field(default=None, description="provider base URL; none: no notifier")
    notify_timeout_s: float = Field(default=2.0, gt=0)
    notify_attempts: int = Field(default=4, ge=1, description="tries per delivery (tenacity)")
    notify_backoff_s: float = Field(default=0.2, gt=0, description="first backoff (full jitter)")
    notify_concurrency: int = Field(
        default=8, ge=1, le=256, description="notifications in flight at once per notifier"
    )
    breaker_window_s: float = Field(default=30, gt=0)
    breaker_min_calls: int = Field(default=10, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_slow_call_s: float = Field(default=1.0, gt=0)
    breaker_open_s: float = Field(default=10, gt=0)
    breaker_half_open_probes: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> Settings:
        if self.gateway_min_replicas > self.gateway_max_replicas:
            raise ValueError("gateway_min_replicas must not exceed gateway_max_replicas")
        if self.replica_port_min + 10000 + self.replica_port_span > 65535:
            raise ValueError("replica ports (and their gRPC ports, +10000) must stay <= 65535")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is not None and self.ingress != "proxy":
            raise ValueError(
                "TLS is served by Ray Serve's Python proxy (Ray's HAProxy ingress has no TLS): "
                "set SHOAL_INGRESS=proxy, or terminate TLS in front of shoal"
            )
        if self.gateway_max_in_flight > self.gateway_max_ongoing_requests:
            raise ValueError("gateway_max_in_flight must not exceed gateway_max_ongoing_requests")
        if max(self.inventory_shards, self.wallet_shards, self.order_shards) > self.partitions:
            raise ValueError("inventory, wallet and order shards must not exceed partitions")
        try:
            self.pool_budget().check(self.pg_max_connections)
        except ConnectionBudgetError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def pool_budget(self) -> PoolBudget:
        """Connections every pool-holding process may take: replicas, shards, auth, a driver."""
        shards = self.inventory_shards + self.wallet_shards + self.order_shards
        processes = self.gateway_max_replicas + shards + 2
        processes += 4  # events: the relay and three consumer groups
        return PoolBudget(
            self.db_pool_size, self.db_max_overflow, processes, self.db_reserved_connections
        )

    @property
    def base_url(self) -> str:
        """Where clients reach the gateway."""
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.http_host}:{self.http_port}"

    def http_verify(self) -> ssl.SSLContext | bool:
        """How shoal's own clients (readiness waits) verify the gateway's certificate."""
        if self.tls_cert is None:
            return True
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=self.tls_cert)  # a self-signed cert is its own CA
        return context
