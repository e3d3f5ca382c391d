"""The gateway as a Ray Serve ingress deployment.

The class is pickled by Serve, so it holds only configuration until a replica constructs
it; the engine, the Redis client and the FastAPI app are built inside the replica. Options
(replicas, autoscaling, CPUs) are applied by the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import FastAPI
from ray import serve

from actors.auth.actor import AUTH_ACTOR_NAME
from actors.auth.model import Rbac
from actors.auth.service import TokenPolicy
from actors.inventory.actor import shard_actor_name
from actors.payments.actor import wallet_actor_name
from actors.placement import Partitioning
from actors.router import ActorDirectory, ShardRouter
from sagas.actor import orchestrator_actor_name
from serve._auth import Authenticator
from serve.app import GatewayDeps, create_app
from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig, Connections, ping_database, ping_redis
from storage.products import SqlUnitOfWorkFactory
from storage.ratelimit import RateSpec, RedisRateLimiter
from storage.session_cache import RedisSessionCache
from storage.streams import EventStreams
from storage.telemetry import configure_logging


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything a gateway replica needs, as plain picklable values.

    Attributes:
        connections: PostgreSQL and Redis.
        cache_policy: TTLs and waits of the product cache.
        namespace: the Ray namespace of shoal's named actors.
        inventory_shards: how many inventory shards there are (until they say otherwise).
        wallet_shards: how many wallet shards there are (until they say otherwise).
        order_shards: how many orchestrator shards there are (until they say otherwise).
        event_partitions: how many event streams there are.
        event_groups: the consumer groups every event stream must have (``bus`` readiness).
        partitions: the fixed number of partitions keys hash to.
        currency: the deployment's one currency.
        max_body: largest request body accepted, in bytes.
        max_in_flight: requests one replica works on at once before it sheds new ones.
        token_policy: the issuer, audience and lifetimes access tokens are checked against.
        extra_roles: configured roles added to the built-in ones.
        rate_limits: per route group, requests per second and burst (GCRA).
        trusted_proxies: peers whose ``X-Forwarded-For`` names the client.
        cors_origins: browser origins allowed to call the API (none: no CORS headers).
        https: whether clients reach the gateway over TLS (adds HSTS).
        log_level: structlog level.
    """

    connections: ConnectionConfig
    cache_policy: CachePolicy
    namespace: str
    inventory_shards: int
    wallet_shards: int
    order_shards: int
    partitions: int
    event_partitions: int = 4
    event_groups: tuple[str, ...] = ()
    currency: str = "USD"
    max_body: int = 64 * 1024
    max_in_flight: int = 48
    token_policy: TokenPolicy = field(default_factory=TokenPolicy)
    extra_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rate_limits: dict[str, tuple[float, int]] = field(
        default_factory=lambda: {"default": (50.0, 100), "auth": (2.0, 20)}
    )
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32",)
    cors_origins: tuple[str, ...] = ()
    https: bool = False
    log_level: str = "INFO"


@serve.ingress()
class GatewayIngress:
    """One gateway replica: builds its connections, then the FastAPI app around them."""

    async def __init__(self, config: GatewayConfig) -> None:  # type: ignore[misc]  # Serve awaits it
        configure_logging(config.log_level, component="gateway")
        self._config = config
        self._conn = Connections(config.connections)
        self._actors = ActorDirectory(config.namespace)
        self._bus = EventStreams(self._conn.redis, config.event_partitions)

    async def _all_actors_answer(self, *routers: ShardRouter) -> None:
        """The auth actor and every shard of each kind's current layout answer ``info``."""
        shards = [name for router in routers for name in await router.refresh()]
        await self._actors.all_answer((AUTH_ACTOR_NAME, *shards))

    def _router(self, kind: str, name_of: Callable[[int], str], shards: int) -> ShardRouter:
        layout = Partitioning(self._config.partitions, shards)
        return ShardRouter(kind, name_of, layout, self._actors.get, self._actors.forget)

    def __serve_build_asgi_app__(self) -> FastAPI:
        config, uow = self._config, SqlUnitOfWorkFactory(self._conn.engine)
        policy = config.token_policy
        authenticator = Authenticator(
            uow,
            RedisSessionCache(self._conn.redis, policy.session_ttl_s),
            Rbac.with_extra(config.extra_roles),
            limiter=RedisRateLimiter(self._conn.redis),
            limits={g: RateSpec.per_second(r, b) for g, (r, b) in config.rate_limits.items()},
            issuer=policy.issuer,
            audience=policy.audience,
            key_grace=timedelta(seconds=policy.access_ttl_s + 60),
        )
        inventory = self._router("inventory", shard_actor_name, config.inventory_shards)
        wallets = self._router("wallets", wallet_actor_name, config.wallet_shards)
        orders = self._router("orders", orchestrator_actor_name, config.order_shards)
        deps = GatewayDeps(
            uow=uow,
            cache=RedisProductCache(self._conn.redis, config.cache_policy),
            authenticator=authenticator,
            auth_actor=lambda: self._actors.get(AUTH_ACTOR_NAME),
            inventory=inventory,
            wallets=wallets,
            orders=orders,
            currency=config.currency,
            trusted_proxies=frozenset(config.trusted_proxies),
            checks={
                "postgres": lambda: ping_database(self._conn),
                "redis": lambda: ping_redis(self._conn),
                "actors": lambda: self._all_actors_answer(inventory, wallets, orders),
                "bus": lambda: self._bus.ready(config.event_groups),
            },
            max_body=config.max_body,
            max_in_flight=config.max_in_flight,
            cors_origins=config.cors_origins,
            https=config.https,
        )
        return create_app(deps)
