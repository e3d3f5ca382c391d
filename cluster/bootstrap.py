"""The composition root: builds configuration, creates the actors, deploys the gateway.

The only module that applies ``ray.remote`` and ``serve.deployment`` options, so where each
process runs and how much of the node it reserves is decided in one place.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve
from ray._private import ray_constants
from ray.exceptions import ActorUnavailableError
from ray.serve.config import BackpressureConfig
from ray.serve.schema import LoggingConfig
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

import actors
import sagas
import storage
from actors._ops import Operation
from actors._shell import ShardInfo
from actors.auth.actor import AUTH_ACTOR_NAME, AuthActor, AuthConfig
from actors.auth.errors import EmailTakenError
from actors.auth.service import TokenPolicy
from actors.inventory.actor import InventoryShardActor, shard_actor_name
from actors.inventory.errors import ProductExistsError
from actors.inventory.model import CreateProduct, NewProduct
from actors.payments.actor import WalletShardActor, wallet_actor_name
from actors.placement import Partitioning
from cluster._events import events_config, start_event_actors
from cluster.localstack import LocalStack, StackError
from cluster.settings import Settings
from sagas.actor import OrchestratorActor, OrchestratorConfig, orchestrator_actor_name
from serve.deployment import GatewayConfig, GatewayIngress
from storage import migrate
from storage.cache import CachePolicy
from storage.connections import ConnectionConfig

log = logging.getLogger(__name__)


def partitioning(settings: Settings) -> Partitioning:
    """The partition layout of inventory shards."""
    return Partitioning(settings.partitions, settings.inventory_shards)


def order_partitioning(settings: Settings) -> Partitioning:
    """Which orchestrator shard owns which partition of order ids."""
    return Partitioning(settings.partitions, settings.order_shards)


def wallet_partitioning(settings: Settings) -> Partitioning:
    """The partition layout of wallet shards."""
    return Partitioning(settings.partitions, settings.wallet_shards)


@functools.cache
def code_release() -> str:
    """A digest of the code shard actors run: a change means replacing them (a handoff).

    Read once per process: the files do not change under a running command.
    """
    digest = hashlib.sha256()
    for package in (actors, sagas, storage):
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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


def wallet_shard_names(settings: Settings) -> tuple[str, ...]:
    """Names of the wallet shard actors."""
    return tuple(wallet_actor_name(i) for i in range(settings.wallet_shards))


@dataclass(frozen=True, slots=True)
class ShardSet:
    """One kind of single-writer shard: its actor class, names, layout and arguments."""

    kind: str
    actor: type
    name: Callable[[int], str]
    layout: Partitioning
    args: tuple[Any, ...]


def shard_sets(settings: Settings, stack: LocalStack) -> list[ShardSet]:
    """The shard kinds of a deployment."""
    conn = connection_config(settings, stack)
    # The inventory and wallet writers go once more on a fresh connection when PostgreSQL
    # dropped theirs (and the gateway's router retries beyond that), so they skip the
    # pool's ping: one round trip less per group commit.
    writer = dataclasses.replace(conn, pre_ping=False)
    return [
        ShardSet(
            "inventory",
            InventoryShardActor,
            shard_actor_name,
            partitioning(settings),
            (writer, cache_policy(settings)),
        ),
        ShardSet(
            "wallets", WalletShardActor, wallet_actor_name, wallet_partitioning(settings), (writer,)
        ),
        ShardSet(
            "orders",
            OrchestratorActor,
            orchestrator_actor_name,
            order_partitioning(settings),
            (conn, orchestrator_config(settings)),
        ),
    ]


def orchestrator_config(settings: Settings) -> OrchestratorConfig:
    """What every orchestrator shard is built from besides its connections."""
    return OrchestratorConfig(
        namespace=settings.namespace,
        inventory_shards=settings.inventory_shards,
        wallet_shards=settings.wallet_shards,
        partitions=settings.partitions,
        currency=settings.currency,
        saga_timeout_s=settings.saga_timeout_s,
        step_timeout_s=settings.saga_step_timeout_s,
    )


def _running(settings: Settings, shards: ShardSet) -> list[Any]:
    """Every running actor of the kind, including shards beyond the configured count."""
    found, index = [], 0
    while True:
        try:
            found.append(ray.get_actor(shards.name(index), namespace=settings.namespace))
        except ValueError:
            return found
        index += 1


def _hand_over(settings: Settings, shards: ShardSet, running: list[Any], release: str) -> None:
    """Retire and remove the running shards when their code or layout is not the wanted one.

    Every old shard is retired first (it stops taking commands and commits what it queued),
    then removed; only then do new shards start. Until they answer, the gateway retries.
    """
    infos = shard_infos(running, 120)
    wanted = len(running) == shards.layout.shards and all(
        i.release == release and i.shards == shards.layout.shards and not i.retired for i in infos
    )
    if wanted:
        return
    log.info("handing %s over: %d shards to %d", shards.kind, len(running), shards.layout.shards)
    ray.get([h.retire.remote() for h in running], timeout=120)
    for handle in running:
        ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 60
    while _running(settings, shards):
        if time.monotonic() > deadline:
            raise StackError(f"old {shards.kind} shards did not stop")
        time.sleep(0.2)


def ensure_shards(
    settings: Settings, stack: LocalStack, shards: ShardSet, release: str | None = None
) -> list[Any]:
    """Create (or find) the detached, restartable shards of one kind, handing over if needed.

    ``release`` names the code the shards run (default: a digest of the code itself).
    """
    release = release or code_release()
    running = _running(settings, shards)
    if running:
        _hand_over(settings, shards, running, release)
    remote_cls: Any = ray.remote(shards.actor)
    return [
        remote_cls.options(
            name=shards.name(shard),
            namespace=settings.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,  # the gateway retries, with the same idempotency keys
            num_cpus=settings.actor_num_cpus,
            max_concurrency=1000,
            runtime_env=runtime_env(stack),
        ).remote(
            shard,
            shards.layout,
            *shards.args,
            release=release,
            log_level=settings.log_level,
        )
        for shard in range(shards.layout.shards)
    ]


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
    """Create the shards and the auth actor; wait until each answers.

    Returns the inventory shard handles, in shard order.
    """
    inventory, wallets, orders = (
        ensure_shards(settings, stack, s) for s in shard_sets(settings, stack)
    )
    auth = ensure_auth_actor(settings, stack)
    start_event_actors(settings, stack, code_release(), timeout_s)
    shard_infos([*inventory, *wallets, *orders], timeout_s)
    ray.get(auth.info.remote(), timeout=timeout_s)
    return inventory


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
    """Every shard's identity; waits until each has loaded its rows.

    A shard Ray is restarting (its process was killed) answers ``ActorUnavailableError``
    at once; it is asked again until it is back, within ``timeout_s``.
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.5),
        retry=retry_if_exception_type(ActorUnavailableError),
        reraise=True,
    )
    infos: list[ShardInfo] = retrying(
        lambda: ray.get([h.info.remote() for h in handles], timeout=timeout_s)
    )
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


def gateway_config(settings: Settings, stack: LocalStack) -> GatewayConfig:
    """What every gateway replica is built from: connections, shards, limits, policies."""
    return GatewayConfig(
        connections=connection_config(settings, stack),
        cache_policy=cache_policy(settings),
        namespace=settings.namespace,
        inventory_shards=settings.inventory_shards,
        wallet_shards=settings.wallet_shards,
        order_shards=settings.order_shards,
        partitions=settings.partitions,
        event_partitions=settings.event_partitions,
        event_groups=events_config(settings, stack).groups,
        currency=settings.currency,
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


def deploy_gateway(settings: Settings, stack: LocalStack) -> None:
    """Deploy (or update) the gateway application and leave it serving."""
    http_options: dict[str, Any] = {"host": settings.http_host, "port": settings.http_port}
    if settings.tls_cert is not None and settings.tls_key is not None:
        http_options["ssl_certfile"] = str(settings.tls_cert.resolve())
        http_options["ssl_keyfile"] = str(settings.tls_key.resolve())
    serve.start(http_options=http_options)
    options = gateway_options(settings)
    options["ray_actor_options"]["runtime_env"] = runtime_env(stack)
    gateway = serve.deployment(name="gateway", **options)(GatewayIngress)
    app = gateway.bind(gateway_config(settings, stack))
    serve.run(app, name=settings.app_name, route_prefix="/", blocking=False)


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
    """Create ``products`` through their owning shards; returns how many are new.

    Running it again changes nothing: a SKU that exists is left as it is.
    """
    layout = partitioning(settings)
    refs = []
    for product in products:
        command = CreateProduct(Operation.once({"seed": product.sku}), product)
        refs.append(handles[layout.owner_of(product.sku)].apply.remote([command]))
    created = 0
    for (result,) in ray.get(refs, timeout=60):
        if isinstance(result, Exception):
            raise result
        if result.refusal is None:
            created += 1
        elif not isinstance(result.refusal, ProductExistsError):
            raise result.refusal
    return created
