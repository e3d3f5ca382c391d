"""``make bench``: the authenticated cached product read against bare Ray Serve, per ingress mode.

For each ingress mode (Ray Serve's HAProxy ingress, its default Python proxy) this starts a
private stack under ``/tmp/shoal-bench`` on ports of its own (PostgreSQL, Redis, a fresh Ray
head, the gateway with 2 replicas, and the bare no-op app of :mod:`benchmarks.bare` with the
same options), seeds and caches one product, then drives ``/bare/`` and
``/products/<sku>`` with wrk from its own process: a short warm-up, then ``--rounds``
measured runs of each target in alternating order. It stops the stack after each mode,
prints a table and writes ``benchmarks/results/<UTC timestamp>.json``, ``latest.json`` and
``latest.png``. Compare ratios, not absolute figures: wrk shares the machine with the server.

    python -m benchmarks.run [--modes haproxy,proxy] [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.loadgen import WrkOptions, run_wrk, wrk_version
from benchmarks.report import (
    BARE,
    PRODUCT,
    TARGETS,
    ModeOutcome,
    TargetSummary,
    document,
    table,
    write_json,
    write_plot,
)
from cluster.localstack import LocalStack, StackError, prepare_local_driver
from cluster.settings import Settings

HOME = Path("/tmp/shoal-bench")
RESULTS_DIR = Path(__file__).with_name("results")
MODES = ("haproxy", "proxy")
SKU = "bench-cached-1"
REPLICAS = 2


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What the command line asked for."""

    modes: tuple[str, ...]
    wrk: WrkOptions
    rounds: int
    warmup_s: int
    results_dir: Path


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> BenchOptions:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated ingress modes")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per target")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        parser.error(f"--modes takes a comma-separated subset of {','.join(MODES)}")
    if min(args.duration, args.connections, args.threads, args.rounds, args.warmup) < 1:
        parser.error("--duration, --connections, --threads, --rounds and --warmup must be >= 1")
    return BenchOptions(
        modes=modes,
        wrk=WrkOptions(args.duration, args.connections, args.threads),
        rounds=args.rounds,
        warmup_s=args.warmup,
        results_dir=args.results_dir,
    )


def bench_settings(mode: str) -> Settings:
    """The benchmark stack's settings: its own home and ports, the gateway at 2 replicas."""
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
    )


def target_urls(settings: Settings) -> dict[str, str]:
    """The URL wrk drives for each target."""
    return {BARE: f"{settings.base_url}/bare/", PRODUCT: f"{settings.base_url}/products/{SKU}"}


def start_stack(settings: Settings, stack: LocalStack) -> None:
    """Start PostgreSQL, Redis, Ray, the shards, the gateway and the bare app; seed one product."""
    # These import ray, which must come after prepare_local_driver() in main().
    from actors.inventory.model import NewProduct  # noqa: PLC0415
    from benchmarks.bare import deploy_bare  # noqa: PLC0415
    from cluster import bootstrap  # noqa: PLC0415

    log(f"{settings.ingress}: starting PostgreSQL and Redis, migrating")
    stack.start_data()
    bootstrap.migrate_database(stack)
    log(f"{settings.ingress}: starting Ray (ingress={settings.ingress})")
    stack.start_ray()
    bootstrap.connect(settings, stack)
    handles = bootstrap.start_actors(settings, stack)
    log(f"{settings.ingress}: deploying the gateway and the bare app")
    bootstrap.deploy_gateway(settings, stack)
    deploy_bare(settings)
    bootstrap.wait_ready(settings)
    product = NewProduct(SKU, "Benchmark product", 1999, settings.currency, 1000)
    bootstrap.seed_products(settings, handles, [product])


def bench_credentials(settings: Settings) -> dict[str, str]:
    """Headers of a customer logged in for the run: the product read is an authenticated one."""
    email = f"bench-{int(time.time())}@example.com"
    body = {"email": email, "password": "benchmark password 2026"}
    with httpx.Client(base_url=settings.base_url, timeout=30) as client:
        client.post("/auth/register", json=body).raise_for_status()
        login = client.post("/auth/login", json=body)
        login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def wait_all_ok(
    urls: list[str],
    headers: dict[str, str],
    timeout_s: float = 120.0,
    streak: int = 5,
) -> None:
    """Wait until every URL answers 200 ``streak`` times in a row (this also fills the cache)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, object] = {}
    with httpx.Client(timeout=5, headers=headers) as client:
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


def measure(
    urls: dict[str, str], headers: dict[str, str], options: BenchOptions, first: int
) -> dict[str, TargetSummary]:
    """Warm up each target, then run ``options.rounds`` rounds in alternating target order.

    Both targets get the same headers (the bare app ignores the token), so requests are
    the same size on the wire.
    """
    warmup = WrkOptions(options.warmup_s, options.wrk.connections, options.wrk.threads)
    for name in TARGETS:
        log(f"warm-up {name}: {warmup.duration_s}s")
        run_wrk(urls[name], warmup, headers)
    runs: dict[str, list[Any]] = {name: [] for name in TARGETS}
    for round_no in range(options.rounds):
        order = TARGETS if (round_no + first) % 2 == 0 else TARGETS[::-1]
        for name in order:
            result = run_wrk(urls[name], options.wrk, headers)
            log(
                f"round {round_no + 1} {name}: {result.rps:.0f} req/s, "
                f"p99 {result.p99_ms:.1f} ms, failed {result.failed}"
            )
            runs[name].append(result)
    return {name: TargetSummary(urls[name], tuple(runs[name])) for name in TARGETS}


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


def run_mode(mode: str, options: BenchOptions, index: int) -> ModeOutcome:
    """Start a stack in ``mode``, measure both targets, and always stop the stack."""
    settings = bench_settings(mode)
    stack = LocalStack(settings)
    stack.stop()  # whatever an interrupted run left under HOME
    try:
        start_stack(settings, stack)
        urls = target_urls(settings)
        headers = bench_credentials(settings)
        wait_all_ok(list(urls.values()), headers)
        return ModeOutcome(mode, measure(urls, headers, options, index))
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
    }


def run_config(options: BenchOptions) -> dict[str, Any]:
    """The knobs of this run, as recorded in the JSON."""
    settings = bench_settings(MODES[0])
    return {
        "modes": list(options.modes),
        "wrk": asdict(options.wrk),
        "rounds": options.rounds,
        "warmup_s": options.warmup_s,
        "summary": "median over rounds; ratio = product rps / bare rps",
        "replicas": REPLICAS,
        "replica_num_cpus": settings.gateway_num_cpus,
        "max_ongoing_requests": settings.gateway_max_ongoing_requests,
        "sku": SKU,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every requested mode, print the table, write the results; 1 if a mode failed."""
    options = parse_args(argv)
    prepare_local_driver(bench_settings(options.modes[0]))  # before anything imports ray
    started = datetime.now(UTC)
    machine = machine_info()
    outcomes = [run_mode(mode, options, i) for i, mode in enumerate(options.modes)]
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(table(outcomes))
    doc = document(started, run_config(options), machine, outcomes)
    path = write_json(options.results_dir, started, doc)
    title = (
        f"shoal cached read vs bare Serve, {REPLICAS} replicas, wrk -c{options.wrk.connections}, "
        f"{machine['nproc']} CPUs, {started:%Y-%m-%d %H:%M} UTC"
    )
    plot = write_plot(options.results_dir, outcomes, title)
    print(f"\nresults: {path}" + (f", {plot}" if plot else ""))
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
