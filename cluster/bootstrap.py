"""The composition root: builds configuration, creates the actors, deploys the gateway.

The only module that applies ``ray.remote`` and ``serve.deployment`` options, so where each
process runs and how much of the node it reserves is decided in one place.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import httpx
import ray
from ray import serve
from ray._private import ray_constants
from ray.serve.config import BackpressureConfig
from ray.serve.schema import LoggingConfig

from actors.auth.actor import AUTH_ACTOR_NAME, AuthActor, AuthConfig
from actors.auth.errors import EmailTakenError
from actors.auth.service import TokenPolicy
from actors.inventory.actor import InventoryShardActor, ShardInfo, shard_actor_name
from actors.inventory.model import NewProduct, Partitioning
from cluster.localstack import LocalStack, StackError
from cluster.settings import Settings
from serve.deployment import GatewayConfig, GatewayIngress
from storage import migrate
from storage.cache import CachePolicy
from storage.connections import ConnectionConfig


def partitioning(settings: Settings) -> Partitioning:
    """The partition layout every process shares."""
    return Partitioning(settings.partitions, settings.inventory_shards)


def connection_config(settings: Settings, stack: LocalStack) -> ConnectionConfig:
    """Connection settings for one pool-holding process, within the connection budget."""
    return ConnectionConfig(
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )


def cache_policy(settings: Settings) -> CachePolicy:
    """Cache lifetimes from the settings."""
    return CachePolicy(
        ttl_s=settings.cache_ttl_s,
        jitter=settings.cache_ttl_jitter,
        absent_ttl_s=settings.cache_absent_ttl_s,
    )


def runtime_env(stack: LocalStack) -> dict[str, Any]:
    """Environment of every shoal process: node-wide metrics go to the stack's directory."""
    return {"env_vars": {"PROMETHEUS_MULTIPROC_DIR": str(stack.paths.metrics)}}


def migrate_database(stack: LocalStack) -> None:
    """Bring the schema up to date (Alembic)."""
    migrate.upgrade(stack.database_url)


def connect(settings: Settings, stack: LocalStack) -> None:
    """Attach this process to the cluster as a driver in shoal's namespace."""
    if not settings.ray_address:
        _require_loopback_mode()
    if not ray.is_initialized():
        ray.init(
            address=stack.ray_address,
            namespace=settings.namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )


def _require_loopback_mode() -> None:
    if ray_constants.ENABLE_RAY_CLUSTER:
        raise StackError(
            "Ray was imported without the local stack's loopback setting; call "
            "cluster.localstack.prepare_local_driver() before importing ray"
        )


def shard_names(settings: Settings) -> tuple[str, ...]:
    """Names of the inventory shard actors."""
    return tuple(shard_actor_name(i) for i in range(settings.inventory_shards))


def ensure_inventory_shards(settings: Settings, stack: LocalStack) -> list[Any]:
    """Create (or find) the detached, restartable inventory shard actors."""
    remote_cls = ray.remote(InventoryShardActor)
    handles = []
    for shard, name in enumerate(shard_names(settings)):
        handles.append(
            remote_cls.options(
                name=name,
                namespace=settings.namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=3,
                num_cpus=settings.actor_num_cpus,
                max_concurrency=1000,
                runtime_env=runtime_env(stack),
            ).remote(
                shard,
                partitioning(settings),
                connection_config(settings, stack),
                cache_policy(settings),
                settings.log_level,
            )
        )
    return handles


def token_policy(settings: Settings) -> TokenPolicy:
    """Issuer, audience and lifetimes of tokens."""
    return TokenPolicy(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        access_ttl_s=settings.access_token_ttl_s,
        session_ttl_s=settings.session_ttl_s,
    )


def _extra_roles(settings: Settings) -> dict[str, tuple[str, ...]]:
    return {name: tuple(perms) for name, perms in settings.extra_roles.items()}


def ensure_auth_actor(settings: Settings, stack: LocalStack) -> Any:
    """Create (or find) the detached auth actor."""
    keys, current = stack.auth_keys()
    config = AuthConfig(
        connections=connection_config(settings, stack),
        policy=token_policy(settings),
        secret_keys=keys,
        current_secret_key=current,
        extra_roles=_extra_roles(settings),
        log_level=settings.log_level,
        login_window_s=settings.login_window_s,
    )
    return (
        ray.remote(AuthActor)
        .options(
            name=AUTH_ACTOR_NAME,
            namespace=settings.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,  # a login retried after a crash would open a second session
            num_cpus=settings.actor_num_cpus,
            max_concurrency=1000,
            runtime_env=runtime_env(stack),
        )
        .remote(config)
    )


def start_actors(settings: Settings, stack: LocalStack, timeout_s: float = 120) -> list[Any]:
    """Create the inventory shards and the auth actor; wait until each answers.

    Returns the shard handles, in shard order.
    """
    shards = ensure_inventory_shards(settings, stack)
    auth = ensure_auth_actor(settings, stack)
    shard_infos(shards, timeout_s)
    ray.get(auth.info.remote(), timeout=timeout_s)
    return shards


def auth_actor(settings: Settings) -> Any:
    """The running auth actor's handle (the driver must be connected)."""
    return ray.get_actor(AUTH_ACTOR_NAME, namespace=settings.namespace)


def ensure_admin(settings: Settings, timeout_s: float = 60) -> str | None:
    """With ``admin_email`` and ``admin_password`` set, make sure that user exists as an admin.

    Creates the user, or grants ``admin`` to an existing one (its password is left alone);
    running it again changes nothing. Returns the email, or ``None`` when not configured.
    """
    if settings.admin_email is None or settings.admin_password is None:
        return None
    handle, trace_id = auth_actor(settings), uuid.uuid4().hex
    password = settings.admin_password.get_secret_value()
    try:
        ray.get(
            handle.create_user.remote(settings.admin_email, password, ["admin"], trace_id),
            timeout=timeout_s,
        )
    except EmailTakenError:
        ray.get(
            handle.grant_role.remote(settings.admin_email, "admin", trace_id), timeout=timeout_s
        )
    return settings.admin_email


def shard_infos(handles: list[Any], timeout_s: float = 30.0) -> list[ShardInfo]:
    """Every shard's identity; waits until each has loaded its rows."""
    infos: list[ShardInfo] = ray.get([h.info.remote() for h in handles], timeout=timeout_s)
    return infos


def gateway_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the gateway: replicas, limits, logging, and no whole CPU reserved."""
    return {
        "max_ongoing_requests": settings.gateway_max_ongoing_requests,
        "max_queued_requests": settings.gateway_max_queued_requests,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=1),
        "logging_config": LoggingConfig(
            encoding="JSON",
            log_level=settings.log_level,
            enable_access_log=settings.gateway_access_log,
        ),
        "autoscaling_config": {
            "min_replicas": settings.gateway_min_replicas,
            "max_replicas": settings.gateway_max_replicas,
            "target_ongoing_requests": settings.gateway_target_ongoing_requests,
        },
        "ray_actor_options": {"num_cpus": settings.gateway_num_cpus},
    }


def deploy_gateway(settings: Settings, stack: LocalStack) -> None:
    """Deploy (or update) the gateway application and leave it serving."""
    http_options: dict[str, Any] = {"host": settings.http_host, "port": settings.http_port}
    if settings.tls_cert is not None and settings.tls_key is not None:
        http_options["ssl_certfile"] = str(settings.tls_cert.resolve())
        http_options["ssl_keyfile"] = str(settings.tls_key.resolve())
    serve.start(http_options=http_options)
    config = GatewayConfig(
        connections=connection_config(settings, stack),
        cache_policy=cache_policy(settings),
        namespace=settings.namespace,
        actor_names=(*shard_names(settings), AUTH_ACTOR_NAME),
        token_policy=token_policy(settings),
        extra_roles=_extra_roles(settings),
        rate_limits={
            "default": (settings.rate_limit_per_s, settings.rate_limit_burst),
            "auth": (settings.auth_rate_limit_per_s, settings.auth_rate_limit_burst),
        },
        trusted_proxies=tuple(str(p) for p in settings.trusted_proxies),
        max_body=settings.max_body_bytes,
        max_in_flight=settings.gateway_max_in_flight,
        cors_origins=tuple(settings.cors_origins),
        https=settings.tls_cert is not None,
        log_level=settings.log_level,
    )
    options = gateway_options(settings)
    options["ray_actor_options"]["runtime_env"] = runtime_env(stack)
    gateway = serve.deployment(name="gateway", **options)(GatewayIngress)
    serve.run(gateway.bind(config), name=settings.app_name, route_prefix="/", blocking=False)


def wait_ready(settings: Settings, timeout_s: float = 180.0) -> dict[str, Any]:
    """Poll ``/readyz`` until it is green; returns its body."""
    deadline = time.monotonic() + timeout_s
    last: object = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(
                f"{settings.base_url}/readyz", timeout=5, verify=settings.http_verify()
            )
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            last = response.text[:200]
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise StackError(f"/readyz not green after {timeout_s:.0f}s (last: {last})")


def seed_products(settings: Settings, handles: list[Any], products: list[NewProduct]) -> int:
    """Create ``products`` through their owning shards (idempotent); returns how many."""
    layout = partitioning(settings)
    refs = [handles[layout.owner_of(p.sku)].create_product.remote(p) for p in products]
    return len(ray.get(refs, timeout=60))
