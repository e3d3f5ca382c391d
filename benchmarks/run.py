"""``make bench``: shoal's cached reads and shard writes against baselines, per ingress mode.

For each ingress mode (Ray Serve's HAProxy ingress, its default Python proxy) this starts a
private stack under ``/tmp/shoal-bench`` on ports of its own (PostgreSQL, Redis, a fresh Ray
head, the gateway with 2 replicas, the bare app of :mod:`benchmarks.bare` and the plain
write baseline of :mod:`benchmarks.plain`, both with the gateway's options), logs in a user
with the roles of every route, and drives each target with wrk from its own process.

- ``read``: the bare no-op ``/bare/``, the unauthenticated cached read
  ``/bare/products/<sku>`` and the authenticated cached read ``/products/<sku>``; ratios to
  the no-op.
- ``write``: restocks and credits through the shards (``/products/<sku>/restock``,
  ``/wallets/<id>/credit``) and through one plain ``UPDATE`` (``/bench-plain/...``), on one
  hot key and on many keys in turn, every request with its own ``Idempotency-Key``; ratios
  shards / plain, against goals of 0.9 (hot) and 0.8 (many). Afterwards the rows' totals
  are checked against the 2xx answers (nothing lost, nothing applied twice), and what
  each write target cost is reported: PostgreSQL sessions opened, commands per commit and
  per actor call. Every process keeps ``--db-pool`` connections open (no overflow), so
  that the plain baseline does not pay for opening connections.
- ``orders``: PlaceOrder end to end, ``POST /orders`` then ``GET /orders/{id}?wait=`` until
  CONFIRMED or FAILED (the saga), against the same three steps in one PostgreSQL
  transaction (``POST /bench-plain/order``, the plain baseline), each with its own
  customers (``--customers``, each funded and logged in) and a few SKUs with more stock
  than a run can sell. :mod:`benchmarks.orderload` drives them from its own process: a
  closed loop of ``--order-clients`` clients (completed orders/s, p50/p95/p99 submit to
  terminal) and an open loop of ``--order-rate`` arrivals per second (latencies), with
  failed orders and errors counted apart and the generator's own CPU time reported.
  Goals (issue 5, for the saga): >= 300 completed orders/s closed-loop, p99 < 250 ms at
  100/s. Afterwards each path's rows are checked against its CONFIRMED orders (see
  :mod:`benchmarks.orders`).

The per-user rate limit is raised out of reach in every section (see
:func:`bench_settings`), so that it never answers 429 to the load.

Each target gets a short warm-up, then ``--rounds`` measured runs, compared targets in
alternating order. The stack is stopped after each mode; a table is printed and
``benchmarks/results/<UTC timestamp>.json``, ``latest.json`` and ``latest.png`` are written.
Compare ratios, not absolute figures: wrk shares the machine with the server.

    python -m benchmarks.run [--modes haproxy,proxy] [--sections read,write,orders]
                             [--duration 10] [--rounds 3] [--order-clients 32] [--order-rate 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil

from benchmarks.loadgen import Target, WrkOptions, WrkResult, run_wrk, wrk_version
from benchmarks.order_report import SKUS_PER_PATH, OrderSummary
from benchmarks.orderload import OrderLoadOptions
from benchmarks.report import (
    BARE,
    GOALS,
    MANY,
    PRODUCT,
    PUBLIC,
    READ_TARGETS,
    SPREADS,
    WRITE_COMPARISONS,
    ModeOutcome,
    TargetSummary,
    document,
    table,
    write_json,
    write_plot,
)
from cluster.localstack import LocalStack, StackError, prepare_local_driver
from cluster.settings import Settings

if TYPE_CHECKING:
    from benchmarks.writes import WriteKeys

HOME = Path("/tmp/shoal-bench")
RESULTS_DIR = Path(__file__).with_name("results")
MODES = ("haproxy", "proxy")
SECTIONS = ("read", "write", "orders")
SKU = "bench-cached-1"
REPLICAS = 2
# Each replica sees about connections / REPLICAS requests at once. With the settings' pool
# (4 kept, 4 overflow) the plain baseline would open and close a PostgreSQL session for
# every request past the fourth: a handicap of the configuration, not of plain UPDATEs.
DB_POOL = 8
# The orders section's runs must end before its customers' access tokens expire (15 min).
ORDERS_MAX_S = 750


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What the command line asked for."""

    modes: tuple[str, ...]
    sections: tuple[str, ...]
    wrk: WrkOptions
    rounds: int
    warmup_s: int
    results_dir: Path
    db_pool: int | None = None
    orders: OrderLoadOptions = field(default_factory=OrderLoadOptions)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> BenchOptions:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated ingress modes")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated sections to run"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per target")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--db-pool",
        type=int,
        default=DB_POOL,
        choices=range(13),
        metavar="0..12",
        help="PostgreSQL connections each process keeps open, no overflow; 0: the settings' "
        f"pool of 4 plus 4 overflow, opened and closed per checkout (default {DB_POOL})",
    )
    _order_args(parser)
    args = parser.parse_args(argv)
    modes = _subset(parser, "--modes", args.modes, MODES)
    sections = _subset(parser, "--sections", args.sections, SECTIONS)
    if min(args.duration, args.connections, args.threads, args.rounds, args.warmup) < 1:
        parser.error("--duration, --connections, --threads, --rounds and --warmup must be >= 1")
    if min(args.order_clients, args.order_rate, args.customers, args.order_wait) <= 0:
        parser.error("--order-clients, --order-rate, --customers and --order-wait must be > 0")
    if "orders" in sections and 2 * args.warmup + 4 * args.rounds * args.duration > ORDERS_MAX_S:
        # The customers' access tokens are issued once, when the section starts.
        parser.error(f"the orders section must end within {ORDERS_MAX_S}s: lower --duration")
    return BenchOptions(
        modes=modes,
        sections=sections,
        wrk=WrkOptions(args.duration, args.connections, args.threads),
        rounds=args.rounds,
        warmup_s=args.warmup,
        results_dir=args.results_dir,
        db_pool=args.db_pool or None,
        orders=OrderLoadOptions(
            args.order_clients, args.order_rate, args.customers, args.order_wait
        ),
    )


def _order_args(parser: argparse.ArgumentParser) -> None:
    defaults = OrderLoadOptions()
    parser.add_argument(
        "--order-clients",
        type=int,
        default=defaults.clients,
        help="orders: concurrent clients of the closed loop",
    )
    parser.add_argument(
        "--order-rate",
        type=float,
        default=defaults.rate,
        help="orders: arrivals per second of the open loop",
    )
    parser.add_argument(
        "--customers", type=int, default=defaults.customers, help="orders: customers per path"
    )
    parser.add_argument(
        "--order-wait",
        type=float,
        default=defaults.wait_s,
        help="orders: seconds of ?wait= on each GET /orders/{id}",
    )


def _subset(
    parser: argparse.ArgumentParser, flag: str, value: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    if not chosen or set(chosen) - set(allowed):
        parser.error(f"{flag} takes a comma-separated subset of {','.join(allowed)}")
    return tuple(v for v in allowed if v in chosen)


def bench_settings(mode: str, db_pool: int | None = None) -> Settings:
    """The benchmark stack's settings: its own home and ports, the gateway at 2 replicas.

    ``db_pool`` sets every process's PostgreSQL pool to that many connections, kept open,
    with no overflow (None: the settings' defaults).
    """
    pool = {} if db_pool is None else {"db_pool_size": db_pool, "db_max_overflow": 0}
    return Settings(
        home=HOME,
        ingress=mode,
        http_port=28000,
        pg_port=25432,
        redis_port=26379,
        ray_port=26380,  # ray start also takes 26381 (dashboard agent) and 26382 (client)
        dashboard_port=28265,
        haproxy_stats_port=28404,
        haproxy_metrics_port=29101,
        serve_fallback_port=28500,
        replica_port_min=32000,
        replica_port_span=500,
        gateway_min_replicas=REPLICAS,
        gateway_max_replicas=REPLICAS,
        # One user drives the load: the GCRA step still runs on every request, but must
        # never refuse, or the figures would measure 429s.
        rate_limit_per_s=1_000_000,
        rate_limit_burst=1_000_000,
        **pool,  # type: ignore[arg-type]
    )


def read_targets(settings: Settings, headers: Mapping[str, str]) -> dict[str, Target]:
    """The read targets, all with the same headers.

    The bare app ignores the token, but sending it keeps the requests the same size.
    """
    base = settings.base_url
    return {
        BARE: Target(f"{base}/bare/", headers),
        PUBLIC: Target(f"{base}/bare/products/{SKU}", headers),
        PRODUCT: Target(f"{base}/products/{SKU}", headers),
    }


def start_stack(settings: Settings, stack: LocalStack, sections: tuple[str, ...]) -> list[Any]:
    """Start PostgreSQL, Redis, Ray, the actors, the gateway and the baselines the sections use.

    Seeds the product of the reads; returns the inventory shards' handles.
    """
    # These import ray, which must come after prepare_local_driver() in main().
    from actors.inventory.model import NewProduct  # noqa: PLC0415
    from benchmarks.bare import deploy_bare  # noqa: PLC0415
    from benchmarks.plain import deploy_plain  # noqa: PLC0415
    from cluster import bootstrap  # noqa: PLC0415

    log(f"{settings.ingress}: starting PostgreSQL and Redis, migrating")
    stack.start_data()
    bootstrap.migrate_database(stack)
    log(f"{settings.ingress}: starting Ray (ingress={settings.ingress})")
    stack.start_ray()
    bootstrap.connect(settings, stack)
    handles = bootstrap.start_actors(settings, stack)
    log(f"{settings.ingress}: deploying the gateway and the baselines")
    bootstrap.deploy_gateway(settings, stack)
    if "read" in sections:
        deploy_bare(settings, stack)
    if "write" in sections or "orders" in sections:
        deploy_plain(settings, stack)
    bootstrap.wait_ready(settings)
    product = NewProduct(SKU, "Benchmark product", 1999, settings.currency, 1000)
    bootstrap.seed_products(settings, handles, [product])
    return handles


def wait_all_ok(
    urls: list[str],
    headers: Mapping[str, str],
    timeout_s: float = 120.0,
    streak: int = 5,
) -> None:
    """Wait until every URL answers 200 ``streak`` times in a row (this also fills the cache)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, object] = {}
    with httpx.Client(timeout=5, headers=dict(headers)) as client:
        for url in urls:
            ok = 0
            while ok < streak:
                if time.monotonic() > deadline:
                    raise StackError(f"not all of {urls} answered 200 in {timeout_s:.0f}s: {last}")
                try:
                    status: object = client.get(url).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                last[url] = status
                ok = ok + 1 if status == 200 else 0
                if status != 200:
                    time.sleep(0.5)


def _log_run(label: str, result: WrkResult) -> None:
    statuses = " ".join(f"{s}:{n}" for s, n in sorted(result.non_2xx_by_status.items()))
    log(
        f"{label}: {result.rps:.0f} req/s, p99 {result.p99_ms:.1f} ms, failed {result.failed}"
        + (f" ({statuses})" if statuses else "")
        + (f", replayed {result.replayed}" if result.replayed else "")
    )


@dataclass(slots=True)
class Plan:
    """What to drive.

    Attributes:
        targets: what wrk drives, by target name.
        groups: targets compared with each other, run in alternating order.
        totals: running totals (sessions, commits...) read around every measured run.
    """

    targets: dict[str, Target] = field(default_factory=dict)
    groups: list[tuple[str, ...]] = field(default_factory=list)
    totals: Callable[[], dict[str, float]] | None = None

    def add(self, targets: Mapping[str, Target], groups: list[tuple[str, ...]]) -> None:
        """Add ``targets``, compared within each of ``groups``."""
        self.targets.update(targets)
        self.groups.extend(groups)


@dataclass(frozen=True, slots=True)
class Measured:
    """What :func:`measure` found.

    Attributes:
        summaries: per target, its measured rounds.
        answered: per target, 2xx answers over warm-ups and rounds.
        growth: per target, how much the plan's totals grew over its rounds.
    """

    summaries: dict[str, TargetSummary]
    answered: Counter[str]
    growth: dict[str, Counter[str]]


def measure(plan: Plan, options: BenchOptions, first: int) -> Measured:
    """Warm up each target, then run ``options.rounds`` rounds.

    In each round every group runs once, its targets in alternating order from round to
    round.
    """
    warmup = WrkOptions(options.warmup_s, options.wrk.connections, options.wrk.threads)
    answered: Counter[str] = Counter()
    growth: dict[str, Counter[str]] = {}

    def drive(name: str, wrk: WrkOptions) -> WrkResult:
        target = plan.targets[name]
        result = run_wrk(target.url, wrk, target.headers, target.load)
        answered[name] += result.answered_2xx
        return result

    names = [n for group in plan.groups for n in group]
    for name in names:
        _log_run(f"warm-up {name} ({warmup.duration_s}s)", drive(name, warmup))
    runs: dict[str, list[WrkResult]] = {n: [] for n in names}
    for round_no in range(options.rounds):
        for group in plan.groups:
            for name in group if (round_no + first) % 2 == 0 else group[::-1]:
                before = plan.totals() if plan.totals else {}
                result = drive(name, options.wrk)
                if plan.totals:
                    after = plan.totals()
                    growth.setdefault(name, Counter()).update(
                        {k: v - before.get(k, 0.0) for k, v in after.items()}
                    )
                _log_run(f"round {round_no + 1} {name}", result)
                runs[name].append(result)
    summaries = {n: TargetSummary(plan.targets[n].url, tuple(r)) for n, r in runs.items()}
    return Measured(summaries, answered, growth)


def stop_stack(stack: LocalStack) -> None:
    """Disconnect the driver and stop every process of the benchmark stack."""
    if "ray" in sys.modules:
        import ray  # noqa: PLC0415 - only once a mode has imported it
        from ray.serve import context  # noqa: PLC0415

        if ray.is_initialized():
            ray.shutdown()
        # The next mode's fresh cluster may give this driver the same job id, which would
        # make Serve reuse the dead controller's cached handle.
        context._set_global_client(None)  # type: ignore[no-untyped-call]
    stack.stop()


@dataclass(frozen=True, slots=True)
class Fixture:
    """What :func:`prepare` made.

    Attributes:
        plan: the wrk targets of the read and write sections.
        keys: the write section's rows (None without it).
        handles: the inventory shards.
        email: the benchmark user (catalog manager and finance).
    """

    plan: Plan
    keys: WriteKeys | None
    handles: list[Any]
    email: str


def prepare(settings: Settings, stack: LocalStack, sections: tuple[str, ...]) -> Fixture:
    """Start the stack and create what the read and write sections drive."""
    from benchmarks import writes  # noqa: PLC0415 - imports ray

    handles = start_stack(settings, stack, sections)
    tag = _tag(settings)
    email, _ = writes.create_bench_user(settings, tag)
    headers = writes.login(settings, email)
    plan = Plan()
    if "read" in sections:
        reads = read_targets(settings, headers)
        wait_all_ok([t.url for t in reads.values()], headers)
        plan.add(reads, [READ_TARGETS])
    if "write" not in sections:
        return Fixture(plan, None, handles, email)
    log(f"{settings.ingress}: creating {MANY} products and wallets per write path")
    keys = writes.create_keys(settings, handles, tag)
    plan.add(
        writes.write_targets(settings.base_url, keys, headers),
        [(c.target, c.baseline) for c in WRITE_COMPARISONS],
    )
    return Fixture(plan, keys, handles, email)


def _tag(settings: Settings) -> str:
    return f"{settings.ingress}-{time.strftime('%Y%m%d%H%M%S')}"


def measure_requests(
    stack: LocalStack, fixture: Fixture, options: BenchOptions, index: int
) -> tuple[dict[str, TargetSummary], dict[str, Any]]:
    """Measure the wrk targets; check that the writes were applied once each."""
    from benchmarks import writes  # noqa: PLC0415 - imports ray

    plan, keys = fixture.plan, fixture.keys
    plan.totals = totals = writes.Totals(stack)
    try:
        before = writes.row_totals(stack, keys) if keys else {}
        probes = writes.probe({n: t for n, t in plan.targets.items() if t.load})
        measured = measure(plan, options, index)
        time.sleep(1)  # let requests wrk left in flight finish before the totals are read
        after = writes.row_totals(stack, keys) if keys else {}
    finally:
        totals.close()
    in_flight = (1 + options.rounds) * len(SPREADS) * options.wrk.connections
    checks = writes.check_applied(before, after, measured.answered + Counter(probes), in_flight)
    checks |= writes.diagnose(measured.summaries, measured.growth)
    return measured.summaries, checks


def measure_orders(
    settings: Settings, stack: LocalStack, fixture: Fixture, options: BenchOptions, index: int
) -> tuple[dict[str, OrderSummary], dict[str, Any]]:
    """Create the orders section's customers and products, drive both paths, check them."""
    from benchmarks import orders  # noqa: PLC0415 - imports ray

    load = options.orders
    log(f"{settings.ingress}: creating {load.customers} funded customers per order path")
    paths = orders.create_paths(
        settings, fixture.handles, fixture.email, _tag(settings), load.customers
    )
    plan = orders.OrderPlan(load, options.wrk.duration_s, options.rounds, options.warmup_s)
    return orders.measure_orders(settings, stack, paths, plan, index)


def measure_mode(
    settings: Settings, stack: LocalStack, options: BenchOptions, index: int
) -> ModeOutcome:
    """Measure the targets of the sections, with their checks."""
    fixture = prepare(settings, stack, options.sections)
    outcome = ModeOutcome(settings.ingress)
    if fixture.plan.targets:
        outcome.targets, outcome.checks = measure_requests(stack, fixture, options, index)
    if "orders" in options.sections:
        outcome.orders, checks = measure_orders(settings, stack, fixture, options, index)
        outcome.checks |= checks
    return outcome


def run_mode(mode: str, options: BenchOptions, index: int) -> ModeOutcome:
    """Start a stack in ``mode``, measure its targets, and always stop the stack."""
    settings = bench_settings(mode, options.db_pool)
    stack = LocalStack(settings)
    stack.stop()  # whatever an interrupted run left under HOME
    try:
        return measure_mode(settings, stack, options, index)
    except Exception as exc:  # report the mode as failed, measure the others
        traceback.print_exc()
        return ModeOutcome(mode, error=f"{type(exc).__name__}: {exc}")
    finally:
        log(f"{mode}: stopping the stack")
        stop_stack(stack)


def machine_info() -> dict[str, Any]:
    """What the figures depend on besides the code."""
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": metadata.version("ray"),
        "wrk": wrk_version(),
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
        "other_ray_clusters_before": other_ray_clusters(),
    }


def other_ray_clusters() -> int:
    """Ray clusters running on this machine besides the benchmark's: they skew the figures."""
    count = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if proc.info["name"] == "gcs_server" and str(HOME) not in cmdline:
            count += 1
    return count


def run_config(options: BenchOptions) -> dict[str, Any]:
    """The knobs of this run, as recorded in the JSON."""
    settings = bench_settings(MODES[0], options.db_pool)
    return {
        "modes": list(options.modes),
        "wrk": asdict(options.wrk),
        "rounds": options.rounds,
        "warmup_s": options.warmup_s,
        "sections": list(options.sections),
        "summary": "median over rounds; ratios: read target rps / bare rps, "
        "write rps through the shards / rps of the plain UPDATE",
        "write_goals": GOALS,
        "write_keys_many": MANY,
        "replicas": REPLICAS,
        "replica_num_cpus": settings.gateway_num_cpus,
        "max_ongoing_requests": settings.gateway_max_ongoing_requests,
        "inventory_shards": settings.inventory_shards,
        "wallet_shards": settings.wallet_shards,
        "partitions": settings.partitions,
        "db_pool_size": settings.db_pool_size,
        "db_max_overflow": settings.db_max_overflow,
        "sku": SKU,
        "rate_limit_per_s": settings.rate_limit_per_s,
        "rate_limit_burst": settings.rate_limit_burst,
        "orders": orders_config(options.orders),
    }


def orders_config(load: OrderLoadOptions) -> dict[str, Any]:
    """The orders section's knobs, as recorded in the JSON."""
    return {
        **asdict(load),
        "order_shards": bench_settings(MODES[0]).order_shards,
        "paths": "saga: POST /orders + GET /orders/{id}?wait= until terminal; "
        "plain: POST /bench-plain/order, one transaction",
        "orders": "1 or 2 lines of 1 or 2 units, SKUs at random",
        "skus_per_path": SKUS_PER_PATH,
        "summary": "sagas_per_s: orders seen CONFIRMED per second (closed loop: within the "
        "run's window; open loop: all arrivals); "
        "latency: submit to terminal status seen, of every terminal order; open loop from "
        "the scheduled arrival",
        "loadgen": "one Python process (asyncio, aiohttp, keep-alive), on the same 2 cores",
    }


def main(argv: list[str] | None = None) -> int:
    """Run every requested mode, print the table, write the results; 1 if a mode failed."""
    options = parse_args(argv)
    prepare_local_driver(bench_settings(options.modes[0]))  # before anything imports ray
    started = datetime.now(UTC)
    machine = machine_info()
    if machine["other_ray_clusters_before"]:
        log(f"warning: {machine['other_ray_clusters_before']} other Ray cluster(s) running")
    outcomes = [run_mode(mode, options, i) for i, mode in enumerate(options.modes)]
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    machine["other_ray_clusters_after"] = other_ray_clusters()
    print(table(outcomes))
    doc = document(started, run_config(options), machine, outcomes)
    path = write_json(options.results_dir, started, doc)
    title = (
        f"shoal vs baselines, {REPLICAS} replicas, wrk -c{options.wrk.connections}, "
        f"{machine['nproc']} CPUs, {started:%Y-%m-%d %H:%M} UTC"
    )
    plot = write_plot(options.results_dir, outcomes, title)
    print(f"\nresults: {path}" + (f", {plot}" if plot else ""))
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
