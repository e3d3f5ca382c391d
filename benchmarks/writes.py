"""The write section's fixture: keys to write to, the wrk targets over them, and the checks.

Restocks and credits go either through the shards (the gateway's routes) or through the
plain baseline of :mod:`benchmarks.plain`, each on one hot key or on :data:`MANY` keys in
turn. The two paths write disjoint rows: a plain ``UPDATE`` behind a shard's back would
make its in-memory row stale. Every request adds 1, so after the run the rows' total must
have grown by the number of 2xx answers (plus at most the requests still in flight when
wrk stopped): :func:`check_applied` says whether it did.

Import this module only after :func:`cluster.localstack.prepare_local_driver` (it imports
``ray``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import ray
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import bindparam, create_engine, text

from actors.inventory.model import NewProduct
from benchmarks.loadgen import Target, WriteLoad
from benchmarks.report import (
    ACTOR,
    MANY,
    PLAIN,
    SPREADS,
    WRITE_TARGETS,
    TargetSummary,
    write_target,
)
from cluster import bootstrap
from cluster.localstack import LocalStack, StackError
from cluster.settings import Settings

PASSWORD = "benchmark password 2026"  # a throwaway user of the private stack
_RESTOCK_BODY = '{"quantity": 1}'
_CREDIT_BODY = '{"amount": 1, "reason": "benchmark"}'
_SUMS = {
    op: text(query).bindparams(bindparam("keys", expanding=True))
    for op, query in (
        ("restock", "SELECT coalesce(sum(available), 0) FROM products WHERE sku IN :keys"),
        ("credit", "SELECT coalesce(sum(balance), 0) FROM wallets WHERE user_id IN :keys"),
    )
}
_SESSIONS = text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
_KINDS = {"restock": "inventory", "credit": "wallets"}
# (sample, method label) -> total; ``{kind}`` is the sample's kind or actor label.
_TOTALS = {
    ("shoal_write_batch_commands_count", "apply"): "{kind}_commits",
    ("shoal_write_batch_commands_sum", "apply"): "{kind}_commands",
    ("shoal_actor_calls_total", "apply"): "{kind}_calls",
    ("shoal_shard_retries_total", "apply"): "shard_retries",
}


@dataclass(frozen=True, slots=True)
class WriteKeys:
    """The rows each write path writes to: SKUs and wallet ids, the first one the hot key."""

    skus: dict[str, tuple[str, ...]]
    wallets: dict[str, tuple[str, ...]]

    def of(self, op: str, path: str) -> tuple[str, ...]:
        """The keys ``op`` (restock, credit) writes to on ``path`` (actor, plain)."""
        return (self.skus if op == "restock" else self.wallets)[path]


def create_bench_user(settings: Settings, tag: str) -> tuple[str, UUID]:
    """A user with the roles of every benchmarked route; returns its email and id."""
    email = f"bench-{tag}@example.com"
    handle = bootstrap.auth_actor(settings)
    user = ray.get(
        handle.create_user.remote(email, PASSWORD, ["catalog_manager", "finance"], "bench"),
        timeout=60,
    )
    return email, user.id


def login(settings: Settings, email: str) -> dict[str, str]:
    """The ``Authorization`` header of a fresh session of ``email``."""
    with httpx.Client(base_url=settings.base_url, timeout=30) as client:
        response = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def create_keys(settings: Settings, handles: list[Any], tag: str) -> WriteKeys:
    """Seed :data:`MANY` products and create :data:`MANY` users (wallets) per write path."""
    skus = {path: tuple(f"bench-w-{path}-{i:03d}" for i in range(MANY)) for path in (ACTOR, PLAIN)}
    products = [
        NewProduct(sku, "Benchmark write target", 100, settings.currency, 0)
        for keys in skus.values()
        for sku in keys
    ]
    bootstrap.seed_products(settings, handles, products)
    handle = bootstrap.auth_actor(settings)
    refs = {
        path: [
            handle.create_user.remote(
                f"bench-{tag}-{path}-{i}@example.com", PASSWORD, ["customer"], "bench"
            )
            for i in range(MANY)
        ]
        for path in (ACTOR, PLAIN)
    }
    wallets = {path: tuple(str(u.id) for u in ray.get(r, timeout=300)) for path, r in refs.items()}
    return WriteKeys(skus, wallets)


def _load(op: str, path: str, keys: tuple[str, ...]) -> WriteLoad:
    body = _RESTOCK_BODY if op == "restock" else _CREDIT_BODY
    if path == ACTOR:
        prefix, suffix = ("/products/", "/restock") if op == "restock" else ("/wallets/", "/credit")
    else:
        prefix, suffix = f"/bench-plain/{op}/", ""
    return WriteLoad("POST", prefix, suffix, body, keys)


def write_targets(base_url: str, keys: WriteKeys, headers: Mapping[str, str]) -> dict[str, Target]:
    """Every write target: restock and credit, hot and many, through the shards and plain."""
    headers = {**headers, "Content-Type": "application/json"}
    targets = {}
    for op in ("restock", "credit"):
        for path in (ACTOR, PLAIN):
            for spread in SPREADS:
                chosen = keys.of(op, path)[: 1 if spread == "hot" else MANY]
                load = _load(op, path, chosen)
                url = f"{base_url}{load.path_prefix}{chosen[0]}{load.path_suffix}"
                targets[write_target(op, spread, path)] = Target(url, headers, load)
    return targets


def probe(targets: Mapping[str, Target], timeout_s: float = 60.0) -> dict[str, int]:
    """POST once to each write target until it answers 2xx; returns the 2xx count per target."""
    answered = dict.fromkeys(targets, 0)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as client:
        for name, target in targets.items():
            assert target.load is not None
            while True:
                response = client.post(
                    target.url,
                    content=target.load.body,
                    headers={**target.headers, "Idempotency-Key": f"probe-{time.time_ns()}"},
                )
                if response.is_success:
                    answered[name] += 1
                    break
                if time.monotonic() > deadline:
                    raise StackError(f"{name} answered {response.status_code}: {response.text}")
                time.sleep(0.5)
    return answered


class Totals:
    """Running totals read before and after each measured run, to tell what the run cost.

    ``pg_sessions``: sessions PostgreSQL has opened (``pg_stat_database.sessions``, read
    over one kept connection). A pool that opens and closes connections per request shows
    here: each costs a TCP handshake, a password exchange and a backend process.
    From the node's metrics files: per shard kind, commits (``<kind>_commits``), commands
    committed (``<kind>_commands``) and ``apply`` calls (``<kind>_calls``); and commands the
    gateway sent again after a retryable failure (``shard_retries``).
    """

    def __init__(self, stack: LocalStack) -> None:
        self._engine = create_engine(stack.database_url, pool_size=1, max_overflow=0)
        self._metrics = str(stack.paths.metrics)

    def __call__(self) -> dict[str, float]:
        totals: defaultdict[str, float] = defaultdict(float)
        with self._engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            totals["pg_sessions"] = float(conn.execute(_SESSIONS).scalar_one())
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._metrics)  # type: ignore[no-untyped-call]
        for metric in registry.collect():
            for sample in metric.samples:
                name = _TOTALS.get((sample.name, sample.labels.get("method", "apply")))
                if name is not None:
                    kind = sample.labels.get("kind") or sample.labels.get("actor", "")
                    totals[name.format(kind=kind)] += sample.value
        return dict(totals)

    def close(self) -> None:
        """Close the kept connection."""
        self._engine.dispose()


def diagnose(
    summaries: Mapping[str, TargetSummary], growth: Mapping[str, Mapping[str, float]]
) -> dict[str, Any]:
    """Per write target, what its rounds cost besides time.

    PostgreSQL sessions opened per thousand requests (connection churn); through the
    shards, also commands per commit (group commit at work), commands per actor call
    (coalescing in the gateway), commits per second and the gateway's retries.
    """
    found: dict[str, Any] = {}
    for name in (t for t in WRITE_TARGETS if t in growth):
        grew = growth[name]
        op, _, path = name.split("-")
        seconds = sum(r.duration_s for r in summaries[name].rounds)
        figures = {"pg_sessions_per_1k": 1000 * grew["pg_sessions"] / summaries[name].requests}
        if path == ACTOR:
            kind = _KINDS[op]
            commits, commands = grew[f"{kind}_commits"], grew[f"{kind}_commands"]
            calls = grew[f"{kind}_calls"]
            figures |= {
                "commands_per_commit": commands / commits if commits else 0.0,
                "commands_per_call": commands / calls if calls else 0.0,
                "commits_per_s": commits / seconds,
                "shard_retries": grew["shard_retries"],
            }
        found[f"cost {name}"] = {k: round(v, 2) for k, v in figures.items()}
    return found


def row_totals(stack: LocalStack, keys: WriteKeys) -> dict[str, int]:
    """The total stock (restock) or balance (credit) of each path's rows, read in PostgreSQL."""
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            totals = {}
            for op, query in _SUMS.items():
                for path in (ACTOR, PLAIN):
                    chosen = [k if op == "restock" else UUID(k) for k in keys.of(op, path)]
                    value = conn.execute(query, {"keys": chosen}).scalar_one()
                    totals[f"{op}-{path}"] = int(value)
            return totals
    finally:
        engine.dispose()


def check_applied(
    before: Mapping[str, int],
    after: Mapping[str, int],
    answered: Mapping[str, int],
    in_flight: int,
) -> dict[str, Any]:
    """Per op and path: rows grew by the 2xx answers, plus at most ``in_flight`` unanswered.

    ``answered`` counts 2xx answers per write target; ``in_flight`` is the most requests
    that can have been sent but not answered (connections x wrk runs, per op and path).
    """
    checks = {}
    for key, was in before.items():
        op, path = key.split("-")
        ok = sum(answered.get(write_target(op, s, path), 0) for s in SPREADS)
        applied = after[key] - was
        checks[f"applied {key}"] = {
            "answered_2xx": ok,
            "applied": applied,
            "ok": ok <= applied <= ok + in_flight,
        }
    return checks
