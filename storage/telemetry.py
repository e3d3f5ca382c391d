"""Structured logs and node-wide Prometheus metrics, shared by every layer.

Metrics use prometheus-client's multiprocess mode: every Ray worker, replica and actor on a
node writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by the composition
root for each process it starts), and ``/metrics`` merges them. One process's registry
would show only the replica that happened to answer the scrape.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

trace_id_var: ContextVar[str] = ContextVar("trace_id", default="-")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HTTP_REQUESTS = Counter(
    "shoal_http_requests_total", "HTTP requests answered.", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "shoal_http_request_duration_seconds",
    "Time from request to response start.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "shoal_cache_requests_total",
    "Cache lookups by outcome (hit, miss, error); the hit ratio is hit / all.",
    ["cache", "outcome"],
)
RATE_LIMIT_FALLBACKS = Counter(
    "shoal_rate_limit_fallback_total",
    "Requests rate-limited by the per-replica limiter because Redis could not answer.",
    ["group"],
)
ACTOR_CALLS = Counter(
    "shoal_actor_calls_total", "Actor method calls handled.", ["actor", "method", "outcome"]
)
ACTOR_LATENCY = Histogram(
    "shoal_actor_call_duration_seconds",
    "Time an actor spent in a method.",
    ["actor", "method"],
    buckets=_LATENCY_BUCKETS,
)
WRITE_BATCH = Histogram(
    "shoal_write_batch_commands",
    "Commands committed in one shard transaction (group commit).",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
SHARD_RETRIES = Counter(
    "shoal_shard_retries_total",
    "Commands the gateway sent to a shard again after a retryable failure.",
    ["kind", "error"],
)
SAGA_TRANSITIONS = Counter(
    "shoal_saga_transitions_total",
    "Saga transitions: created (started), succeeded, step_failed, compensated, completed, "
    "failed, stuck, retried, aborted; by saga and step.",
    ["saga", "transition", "step"],
)
SAGA_STEP_SECONDS = Histogram(
    "shoal_saga_step_duration_seconds",
    "Time from a step's start to its success or failure, retries included.",
    ["saga", "step"],
    buckets=_LATENCY_BUCKETS,
)


# events: gauges keep the most recent value any live process set
OUTBOX_BACKLOG = Gauge(
    "shoal_outbox_backlog_events",
    "Events committed to the outbox and not yet published.",
    multiprocess_mode="livemostrecent",
)
EVENTS_PUBLISHED = Counter("shoal_events_published_total", "Events the relay published.")
EVENTS_REPUBLISHED = Counter(
    "shoal_events_republished_total", "Events published again because Redis lost them."
)
STREAM_LAG = Gauge(
    "shoal_stream_lag_events",
    "Events a consumer group has not acknowledged yet (undelivered plus pending).",
    ["group"],
    multiprocess_mode="livemostrecent",
)
EVENTS_HANDLED = Counter(
    "shoal_events_handled_total",
    "Events a consumer group handled, by outcome (handled, skipped, duplicate, failed, dead).",
    ["group", "type", "outcome"],
)
DEAD_LETTERS = Counter("shoal_dead_letters_total", "Events given up on.", ["group"])
BREAKER_STATE = Gauge(
    "shoal_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
    ["breaker"],
    multiprocess_mode="livemostrecent",
)
BREAKER_CALLS = Counter(
    "shoal_breaker_calls_total",
    "Calls through a circuit breaker by outcome (success, failure, slow, rejected).",
    ["breaker", "outcome"],
)
NOTIFICATIONS = Counter(
    "shoal_notifications_total", "Notifier calls to the provider by outcome.", ["outcome"]
)


def _add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.setdefault("trace_id", trace_id_var.get())
    return event


def configure_logging(level: str = "INFO", component: str = "shoal") -> None:
    """Send JSON lines with ``trace_id`` in every line to stderr (Ray collects them)."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_id,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(component=component)


def _node_registry(metrics_dir: str | None = None) -> CollectorRegistry:
    directory = metrics_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        return REGISTRY
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def node_metrics_text() -> bytes:
    """Prometheus text merged from every process of this node, plus the cache hit ratios."""
    registry = _node_registry()
    ratio = GaugeMetricFamily(
        "shoal_cache_hit_ratio",
        "Cache hits over all lookups since the node started.",
        labels=["cache"],
    )
    for cache, value in cache_hit_ratios_of(registry).items():
        ratio.add_metric([cache], value)
    return generate_latest(registry) + generate_latest(_Fixed([ratio]))


class _Fixed(CollectorRegistry):
    def __init__(self, families: list[Metric]) -> None:
        super().__init__(auto_describe=False)
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def cache_hit_ratios(metrics_dir: str | os.PathLike[str] | None = None) -> dict[str, float]:
    """Hit ratio per cache from the node's merged counters (``{}`` before any lookup)."""
    return cache_hit_ratios_of(_node_registry(os.fspath(metrics_dir) if metrics_dir else None))


def cache_hit_ratios_of(registry: CollectorRegistry) -> dict[str, float]:
    """Hit ratio per cache from the ``shoal_cache_requests_total`` samples of ``registry``."""
    counts: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        if family.name != "shoal_cache_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                per = counts.setdefault(sample.labels["cache"], {})
                per[sample.labels["outcome"]] = per.get(sample.labels["outcome"], 0) + sample.value
    return {
        cache: round(per.get("hit", 0) / total, 4)
        for cache, per in counts.items()
        if (total := sum(per.values())) > 0
    }
