"""The orders section: customers and products, runs of the order load generator, the checks.

Two paths place orders, each on rows of its own (a plain ``UPDATE`` behind a shard's back
would make the shard's row stale): ``saga``, shoal's PlaceOrder (``POST /orders``, then
``GET /orders/{id}?wait=`` until CONFIRMED or FAILED), and ``plain``, the same three steps
in one PostgreSQL transaction (``POST /bench-plain/order`` of :mod:`benchmarks.plain`).
Each path has ``SKUS_PER_PATH`` products with :data:`STOCK` units (far more than a run can
sell, so no order fails for stock) and ``customers`` customers funded with :data:`FUNDS`,
each with its own access token. Every run is :mod:`benchmarks.orderload` in its own process.

After all runs, once no order of a path is still pending, :func:`check_orders` compares
PostgreSQL with what the clients saw: the CONFIRMED (and FAILED) rows number what the
clients saw, give or take the orders that ended in an error; every SKU's stock fell by
exactly the units of the CONFIRMED rows, with nothing left reserved; the wallets fell by
exactly their totals.

Import this module only after :func:`cluster.localstack.prepare_local_driver` (it imports
``ray``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import ray
from sqlalchemy import Engine, bindparam, create_engine, text

from actors._ops import MAX_QUANTITY
from actors.inventory.model import NewProduct
from benchmarks.loadgen import LoadGenError
from benchmarks.order_report import (
    CLOSED,
    LOOPS,
    ORDER_PATHS,
    PLAIN,
    SAGA,
    SKUS_PER_PATH,
    OrderRun,
    OrderSummary,
    order_target,
)
from benchmarks.orderload import MARKER, Job, OrderLoadOptions
from benchmarks.writes import PASSWORD
from cluster import bootstrap
from cluster.localstack import LocalStack, StackError
from cluster.settings import Settings

PRICE = 100  # minor units per unit (the i-th SKU costs PRICE + i)
STOCK = MAX_QUANTITY  # units per SKU: a run at 1,000 orders/s for minutes sells a few %
FUNDS = 10**11  # minor units per customer
SETTLE_S = 60.0  # how long pending orders get to end before the checks
_ROOT = Path(__file__).resolve().parents[1]
_UNSETTLED = ("PENDING", "CANCELLING")
_STOCK = text("SELECT sku, available, reserved FROM products WHERE sku IN :skus")
_BALANCE = text("SELECT coalesce(sum(balance), 0) FROM wallets WHERE user_id IN :users")
_STATUSES = text("SELECT status, count(*) FROM orders WHERE user_id IN :users GROUP BY status")
_SOLD = text(
    """
    SELECT line->>'sku', sum((line->>'quantity')::bigint)
      FROM orders, jsonb_array_elements(CAST(items AS jsonb)) AS line
     WHERE user_id IN :users AND status = 'CONFIRMED'
     GROUP BY 1
    """
)
_PAID = text(
    "SELECT coalesce(sum(total), 0) FROM orders WHERE user_id IN :users AND status = 'CONFIRMED'"
)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class OrderPath:
    """One path's rows: its SKUs, its customers and their access tokens."""

    name: str
    skus: tuple[str, ...]
    customers: tuple[UUID, ...]
    tokens: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rows:
    """What PostgreSQL holds for one path's rows."""

    available: dict[str, int]
    reserved: dict[str, int]
    balance: int
    statuses: dict[str, int]
    sold: dict[str, int]
    paid: int

    @property
    def unsettled(self) -> int:
        """Orders still PENDING (or CANCELLING)."""
        return sum(self.statuses.get(s, 0) for s in _UNSETTLED)


@dataclass(slots=True)
class Seen:
    """What the clients of one path saw, over all its runs (warm-ups included)."""

    confirmed: int = 0
    failed: int = 0
    errors: int = 0
    units: Counter[str] = field(default_factory=Counter)
    money: int = 0

    def add(self, run: OrderRun) -> None:
        """Count one run."""
        self.confirmed += run.confirmed
        self.failed += run.failed
        self.errors += run.error_count
        self.units.update(run.units)
        self.money += run.money


def _login(handle: Any, emails: list[str]) -> list[str]:
    """Access tokens of fresh sessions, through the auth actor (the HTTP login is throttled)."""
    issued = ray.get([handle.login.remote(e, PASSWORD, "shoal-bench") for e in emails], timeout=300)
    return [t.access_token for t in issued]


def _credit(client: httpx.Client, user_id: UUID, timeout_s: float = 60.0) -> None:
    """Fund one wallet through the gateway, retrying what the gateway asks to retry."""
    body = {"amount": FUNDS, "reason": "benchmark funds"}
    key = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.post(
            f"/wallets/{user_id}/credit", json=body, headers={"Idempotency-Key": key}
        )
        if response.is_success:
            return
        if time.monotonic() > deadline:
            raise StackError(f"credit of {user_id} answered {response.status_code}")
        time.sleep(0.2)


def create_paths(
    settings: Settings, handles: list[Any], finance_email: str, tag: str, customers: int
) -> dict[str, OrderPath]:
    """Seed each path's SKUs; create, fund and log in its customers."""
    skus = {p: tuple(f"bench-o-{p}-{i:02d}" for i in range(SKUS_PER_PATH)) for p in ORDER_PATHS}
    products = [
        NewProduct(sku, "Benchmark order item", PRICE + i, settings.currency, STOCK)
        for keys in skus.values()
        for i, sku in enumerate(keys)
    ]
    bootstrap.seed_products(settings, handles, products)
    handle = bootstrap.auth_actor(settings)
    emails = {p: [f"bench-{tag}-o{p}-{i}@example.com" for i in range(customers)] for p in skus}
    refs = {
        p: [handle.create_user.remote(e, PASSWORD, ["customer"], "bench") for e in emails[p]]
        for p in ORDER_PATHS
    }
    ids = {p: tuple(u.id for u in ray.get(r, timeout=600)) for p, r in refs.items()}
    headers = {"Authorization": f"Bearer {_login(handle, [finance_email])[0]}"}
    with httpx.Client(base_url=settings.base_url, headers=headers, timeout=30) as client:
        for user_id in (i for p in ORDER_PATHS for i in ids[p]):
            _credit(client, user_id)
    return {p: OrderPath(p, skus[p], ids[p], tuple(_login(handle, emails[p]))) for p in ids}


def read_rows(engine: Engine, path: OrderPath) -> Rows:
    """The path's stock, balances and orders, read in PostgreSQL."""
    skus, users = {"skus": list(path.skus)}, {"users": list(path.customers)}
    with engine.connect() as conn:
        stock = conn.execute(_STOCK.bindparams(bindparam("skus", expanding=True)), skus).all()
        balance = conn.execute(_BALANCE.bindparams(bindparam("users", expanding=True)), users)
        statuses = conn.execute(_STATUSES.bindparams(bindparam("users", expanding=True)), users)
        sold = conn.execute(_SOLD.bindparams(bindparam("users", expanding=True)), users)
        paid = conn.execute(_PAID.bindparams(bindparam("users", expanding=True)), users)
        return Rows(
            available={sku: int(a) for sku, a, _ in stock},
            reserved={sku: int(r) for sku, _, r in stock},
            balance=int(balance.scalar_one()),
            statuses={s: int(n) for s, n in statuses.all()},
            sold={sku: int(n) for sku, n in sold.all()},
            paid=int(paid.scalar_one()),
        )


def settled_rows(engine: Engine, path: OrderPath, timeout_s: float = SETTLE_S) -> Rows:
    """The path's rows once none of its orders is pending (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    rows = read_rows(engine, path)
    while rows.unsettled and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = read_rows(engine, path)
    return rows


def check_orders(before: Rows, after: Rows, seen: Seen) -> dict[str, Any]:
    """Whether PostgreSQL moved exactly what the CONFIRMED orders say, and as the clients saw.

    Orders that ended in an error may or may not have been placed: the counts of CONFIRMED
    and FAILED rows may exceed what the clients saw by at most that many.
    """
    skus = sorted(before.available)
    moved = {s: before.available[s] - after.available.get(s, 0) for s in skus}
    sold = {s: after.sold.get(s, 0) - before.sold.get(s, 0) for s in skus}
    confirmed = after.statuses.get("CONFIRMED", 0) - before.statuses.get("CONFIRMED", 0)
    failed = after.statuses.get("FAILED", 0) - before.statuses.get("FAILED", 0)
    checks = {
        "settled": after.unsettled == 0,
        "stock": moved == sold,
        "reserved": after.reserved == before.reserved,
        "money": before.balance - after.balance == after.paid - before.paid,
        "confirmed": seen.confirmed <= confirmed <= seen.confirmed + seen.errors,
        "failed": seen.failed <= failed <= seen.failed + seen.errors,
    }
    return {
        "confirmed_seen": seen.confirmed,
        "confirmed_rows": confirmed,
        "failed_seen": seen.failed,
        "failed_rows": failed,
        "errors_seen": seen.errors,
        "unsettled_rows": after.unsettled,
        "units_sold": sum(sold.values()),
        "units_moved": sum(moved.values()),
        "money_paid": after.paid - before.paid,
        "money_moved": before.balance - after.balance,
        "stock_left_min": min(after.available.values(), default=0),
        "failing": [k for k, ok in checks.items() if not ok],
        "ok": all(checks.values()),
    }


def run_orderload(job: Job) -> OrderRun:
    """Run :mod:`benchmarks.orderload` on ``job`` in its own process and read its report."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.orderload"],
        input=json.dumps(asdict(job)),
        capture_output=True,
        text=True,
        check=False,
        cwd=_ROOT,
        timeout=job.duration_s + job.give_up_s + 60,
    )
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return OrderRun.parse(json.loads(line[len(MARKER) :]))
    raise LoadGenError(f"orderload failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}")


def _log_run(label: str, run: OrderRun) -> None:
    errors = " ".join(f"{k}:{n}" for k, n in sorted(run.errors.items()))
    _log(
        f"{label}: {run.sagas_per_s:.1f} orders/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, failed {run.failed}, errors {run.error_count}"
        + (f" ({errors})" if errors else "")
        + f", loadgen cpu {100 * run.cpu_share:.0f}%"
        + (f", late {run.behind_ms:.0f} ms" if run.behind_ms >= 1 else "")
    )
    for kind, body in run.error_samples.items():
        _log(f"  first {kind}: {' '.join(body.split())[:160]}")


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """How long and how hard to drive the two paths."""

    load: OrderLoadOptions
    duration_s: int
    rounds: int
    warmup_s: int


def measure_orders(
    settings: Settings,
    stack: LocalStack,
    paths: dict[str, OrderPath],
    plan: OrderPlan,
    first: int,
) -> tuple[dict[str, OrderSummary], dict[str, Any]]:
    """Warm each path up, run ``plan.rounds`` rounds of both loops, check each path's rows.

    In each round, each loop runs both paths, in alternating order from round to round.
    Returns the summaries by target and the checks by path.
    """
    engine = create_engine(stack.database_url, pool_size=1, max_overflow=0)
    try:
        before = {p: read_rows(engine, path) for p, path in paths.items()}
        seen = {p: Seen() for p in paths}
        drive = _driver(settings, paths, plan, seen)
        for name in ORDER_PATHS:
            _log_run(f"warm-up {order_target(name, CLOSED)}", drive(name, CLOSED, plan.warmup_s))
        runs: dict[tuple[str, str], list[OrderRun]] = {}
        for round_no in range(plan.rounds):
            order = ORDER_PATHS if (round_no + first) % 2 == 0 else ORDER_PATHS[::-1]
            for loop in LOOPS:
                for name in order:
                    run = drive(name, loop, plan.duration_s)
                    _log_run(f"round {round_no + 1} {order_target(name, loop)}", run)
                    runs.setdefault((name, loop), []).append(run)
        checks = {
            f"orders {p}": check_orders(before[p], settled_rows(engine, path), seen[p])
            for p, path in paths.items()
        }
    finally:
        engine.dispose()
    urls = {SAGA: "/orders", PLAIN: "/bench-plain/order"}
    summaries = {
        order_target(p, loop): OrderSummary(settings.base_url + urls[p], tuple(r))
        for (p, loop), r in runs.items()
    }
    return summaries, checks


def _driver(
    settings: Settings, paths: dict[str, OrderPath], plan: OrderPlan, seen: dict[str, Seen]
) -> Callable[[str, str, int], OrderRun]:
    """Runs one path in one loop for some seconds, and counts what its clients saw."""

    def drive(name: str, loop: str, duration_s: int) -> OrderRun:
        path = paths[name]
        job = Job(
            base_url=settings.base_url,
            path=name,
            loop=loop,
            duration_s=duration_s,
            tokens=list(path.tokens),
            skus=list(path.skus),
            clients=plan.load.clients,
            rate=plan.load.rate,
            wait_s=plan.load.wait_s,
            give_up_s=3 * plan.load.wait_s,
            run_id=uuid.uuid4().hex[:16],
            seed=time.time_ns(),
        )
        run = run_orderload(job)
        seen[name].add(run)
        return run

    return drive
