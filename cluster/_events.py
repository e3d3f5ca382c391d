"""Starts the event side: the relay actor and one actor per consumer group.

Called by the composition root where the shard actors are started. The actors are
detached, named and restarted by Ray after a crash; one running older code is replaced
(events are durable and handled idempotently, so no handoff is needed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from actors.events.actor import (
    RELAY_ACTOR_NAME,
    EventRelayActor,
    EventWorkerActor,
    worker_actor_name,
)
from actors.events.notifier import NotifierPolicy
from actors.events.service import EventsConfig
from actors.events.worker import WorkerPolicy
from cluster.localstack import LocalStack
from cluster.settings import Settings
from storage.breaker import BreakerPolicy
from storage.cache import CachePolicy
from storage.connections import ConnectionConfig, Connections
from storage.janitor import Retention
from storage.products import SqlUnitOfWorkFactory
from storage.streams import EventStreams


def events_config(settings: Settings, stack: LocalStack) -> EventsConfig:
    """The event side's configuration from the settings."""
    notifier = None
    if settings.notify_url:
        notifier = NotifierPolicy(
            url=settings.notify_url,
            timeout_s=settings.notify_timeout_s,
            attempts=settings.notify_attempts,
            backoff_s=settings.notify_backoff_s,
            concurrency=settings.notify_concurrency,
        )
    return EventsConfig(
        connections=ConnectionConfig(
            database_url=stack.database_url,
            redis_url=stack.redis_url,
            pool_size=2,
            max_overflow=2,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        ),
        partitions=settings.event_partitions,
        relay_batch=settings.event_batch,
        linger_s=settings.event_linger_ms / 1000,
        sweep_interval_s=settings.event_sweep_interval_s,
        republish_after_s=settings.event_republish_after_s,
        retention=Retention(settings.event_retention_s, settings.idempotency_retention_s),
        janitor_interval_s=settings.janitor_interval_s,
        worker=WorkerPolicy(
            count=settings.event_read_count,
            linger_ms=settings.event_linger_ms,
            claim_idle_ms=settings.event_claim_idle_ms,
            max_deliveries=settings.event_max_deliveries,
        ),
        cache_policy=CachePolicy(
            ttl_s=settings.cache_ttl_s, absent_ttl_s=settings.cache_absent_ttl_s
        ),
        notifier=notifier,
        breaker=BreakerPolicy(
            window_s=settings.breaker_window_s,
            min_calls=settings.breaker_min_calls,
            failure_rate=settings.breaker_failure_rate,
            slow_call_s=settings.breaker_slow_call_s,
            open_s=settings.breaker_open_s,
            half_open_probes=settings.breaker_half_open_probes,
        ),
    )


def _options(settings: Settings, stack: LocalStack, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": settings.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,  # its methods only report; the loop restarts with the actor
        "num_cpus": settings.actor_num_cpus,
        "runtime_env": {"env_vars": {"PROMETHEUS_MULTIPROC_DIR": str(stack.paths.metrics)}},
    }


def _replace_if_stale(settings: Settings, name: str, release: str) -> None:
    try:
        handle = ray.get_actor(name, namespace=settings.namespace)
    except ValueError:
        return
    try:
        info: Any = ray.get(handle.info.remote(), timeout=30)
        current = info.release
    except Exception:  # an actor that cannot answer is replaced as well
        current = None
    if current != release:
        ray.kill(handle, no_restart=True)


def start_event_actors(
    settings: Settings, stack: LocalStack, release: str, timeout_s: float = 120
) -> list[Any]:
    """Create (or find) the relay and the consumer-group actors; wait until each answers.

    Returns their handles, the relay first.
    """
    config = events_config(settings, stack)
    names = [RELAY_ACTOR_NAME, *(worker_actor_name(g) for g in config.groups)]
    for name in names:
        _replace_if_stale(settings, name, release)
    common = {"release": release, "log_level": settings.log_level}
    relay = (
        ray.remote(EventRelayActor)
        .options(**_options(settings, stack, RELAY_ACTOR_NAME))
        .remote(config, **common)
    )
    workers = [
        ray.remote(EventWorkerActor)
        .options(**_options(settings, stack, worker_actor_name(group)))
        .remote(config, group, **common)
        for group in config.groups
    ]
    handles: list[Any] = [relay, *workers]
    ray.get([h.info.remote() for h in handles], timeout=timeout_s)
    return handles


async def _event_status(settings: Settings, stack: LocalStack) -> dict[str, Any]:
    config = events_config(settings, stack)
    conn = Connections(config.connections)
    try:
        lag = await EventStreams(conn.redis, config.partitions).lag(config.groups)
        async with SqlUnitOfWorkFactory(conn.engine)() as uow:
            dead = await uow.dead_letters.count_open()
    finally:
        await conn.close()
    return {"lag": lag, "dead_letters": dead}


def event_status(settings: Settings, stack: LocalStack) -> dict[str, Any]:
    """Event lag per consumer group and the dead letters not replayed (for ``shoal status``)."""
    return asyncio.run(_event_status(settings, stack))
