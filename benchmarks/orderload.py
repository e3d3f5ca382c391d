"""The orders section's load generator: one process, asyncio and aiohttp, one JSON report.

Run as ``python -m benchmarks.orderload`` with its :class:`Job` as JSON on stdin; it prints
one line, :data:`MARKER` and a JSON report (see :meth:`Tally.report`). It imports nothing of
shoal and keeps one keep-alive connection pool, so that it costs little of the CPU it shares
with the server; it reports the CPU time it used all the same.

- ``closed`` loop: ``clients`` workers each place an order and wait for its end before the
  next one.
- ``open`` loop: orders arrive on a fixed schedule, ``rate`` per second, whether or not the
  earlier ones have finished. Latency counts from the scheduled arrival, so a generator that
  falls behind shows in the figures instead of hiding the server's delays.

Path ``saga``: ``POST /orders`` (202, PENDING), then ``GET /orders/{id}?wait=`` until the
order is CONFIRMED or FAILED. Path ``plain``: ``POST /bench-plain/order``, whose answer is
final (201 CONFIRMED, or a 409 problem). Latency is submit to terminal status seen.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

MARKER = "ORDERLOAD_JSON "
SAGA, PLAIN = "saga", "plain"
CLOSED, OPEN = "closed", "open"
CONFIRMED, FAILED = "CONFIRMED", "FAILED"
_TERMINAL = (CONFIRMED, FAILED)
_SUBMIT = {SAGA: ("/orders", 202), PLAIN: ("/bench-plain/order", 201)}


@dataclass(frozen=True, slots=True)
class OrderLoadOptions:
    """How hard the orders section drives each path.

    Attributes:
        clients: closed loop: concurrent clients.
        rate: open loop: orders per second.
        customers: customers per path, each with a token of its own, taken in turn.
        wait_s: the ``?wait=`` of each ``GET /orders/{id}``.
    """

    clients: int = 32
    rate: float = 100.0
    customers: int = 64
    wait_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Job:
    """What to drive.

    Attributes:
        base_url: the gateway.
        path: ``saga`` or ``plain``.
        loop: ``closed`` or ``open``.
        duration_s: how long orders are started.
        tokens: access tokens of the customers, taken in turn.
        skus: the products orders are made of (one or two lines, one or two units each).
        clients: closed loop: concurrent clients.
        rate: open loop: orders per second.
        wait_s: the ``?wait=`` of each ``GET /orders/{id}``.
        give_up_s: an order not terminal this long after its arrival counts as an error.
        max_in_flight: open loop: arrivals past this many unfinished orders are shed (counted).
        run_id: makes the idempotency keys unique across runs.
        seed: of the orders' random composition.
    """

    base_url: str
    path: str
    loop: str
    duration_s: float
    tokens: list[str]
    skus: list[str]
    clients: int = 32
    rate: float = 100.0
    wait_s: float = 10.0
    give_up_s: float = 30.0
    max_in_flight: int = 1000
    run_id: str = "run"
    seed: int = 0


@dataclass(slots=True)
class Tally:
    """What the orders of one run came to."""

    window_end: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    in_window: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    units: Counter[str] = field(default_factory=Counter)
    money: int = 0
    behind_s: float = 0.0

    def settled(self, arrived: float, order: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        """An order seen CONFIRMED or FAILED."""
        ended = time.monotonic()
        status = order["status"]
        self.latencies_s.append(ended - arrived)
        self.outcomes[status] += 1
        if ended <= self.window_end:
            self.in_window[status] += 1
        if status == CONFIRMED:
            self.money += int(order["total"])
            self.units.update({line["sku"]: line["quantity"] for line in lines})
        else:
            self.reasons[str(order.get("failure_reason"))] += 1

    def error(self, kind: str, body: bytes | str = b"") -> None:
        """An order that ended in an error; the first body of each kind is kept."""
        self.errors[kind] += 1
        if kind not in self.samples:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            self.samples[kind] = text[:300]

    def report(self, job: Job, wall_s: float, cpu_s: float) -> dict[str, Any]:
        """The run's figures (latencies in milliseconds, of every terminal order).

        Completed orders per second: closed loop, those seen CONFIRMED within the window;
        open loop, every arrival seen CONFIRMED (arrivals all fall in the window, and the
        last ones end after it).
        """
        closed = job.loop == CLOSED
        confirmed = self.in_window[CONFIRMED] if closed else self.outcomes[CONFIRMED]
        return {
            "path": job.path,
            "loop": job.loop,
            "duration_s": job.duration_s,
            "clients": job.clients if job.loop == CLOSED else None,
            "rate": job.rate if job.loop == OPEN else None,
            "submitted": sum(self.outcomes.values()) + sum(self.errors.values()),
            "confirmed": self.outcomes[CONFIRMED],
            "failed": self.outcomes[FAILED],
            "failed_by_reason": dict(self.reasons),
            "errors": dict(self.errors),
            "error_samples": self.samples,
            "confirmed_in_window": confirmed,
            "sagas_per_s": confirmed / job.duration_s,
            "latency_ms": percentiles(self.latencies_s),
            "units": dict(self.units),
            "money": self.money,
            "behind_ms": round(1000 * self.behind_s, 1),
            "wall_s": round(wall_s, 3),
            "cpu_s": round(cpu_s, 3),
            "cpu_total_s": round(_own_cpu_s(), 3),
        }


def percentiles(values_s: list[float]) -> dict[str, float]:
    """p50/p90/p95/p99, mean and max in milliseconds (nearest rank; zeros when empty)."""
    if not values_s:
        return dict.fromkeys(("p50", "p90", "p95", "p99", "mean", "max"), 0.0)
    ordered = sorted(values_s)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    figures = {f"p{int(p * 100)}": rank(p) for p in (0.5, 0.9, 0.95, 0.99)}
    figures |= {"mean": sum(ordered) / len(ordered), "max": ordered[-1]}
    return {k: round(1000 * v, 3) for k, v in figures.items()}


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class OrderLoad:
    """Drives one :class:`Job` over one session."""

    def __init__(self, job: Job, session: aiohttp.ClientSession) -> None:
        self._job = job
        self._session = session
        self._random = random.Random(job.seed)
        self.tally = Tally()

    def _lines(self) -> list[dict[str, Any]]:
        count = min(len(self._job.skus), self._random.randint(1, 2))
        skus = self._random.sample(self._job.skus, count)
        return [{"sku": sku, "quantity": self._random.randint(1, 2)} for sku in skus]

    async def _call(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, dict[str, Any], bytes]:
        async with self._session.request(method, url, data=body, headers=headers) as response:
            raw = await response.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        return response.status, answer if isinstance(answer, dict) else {}, raw

    async def place(self, n: int, arrived: float) -> None:
        """Place order ``n`` and follow it to its end; tally what happened."""
        job = self._job
        lines = self._lines()
        headers = {
            "Authorization": f"Bearer {job.tokens[n % len(job.tokens)]}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"{job.run_id}-{n}",
        }
        url, accepted = _SUBMIT[job.path]
        try:
            status, order, raw = await self._call(
                "POST", url, headers, json.dumps({"items": lines}).encode()
            )
            if job.path == PLAIN and status == 409:  # a refusal: the order failed at once
                order = {"status": FAILED, "failure_reason": order.get("type", "409")}
            elif status != accepted:
                self.tally.error(f"submit {status}", raw)
                return
            await self._follow(order, lines, headers, arrived)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(type(exc).__name__, repr(exc))

    async def _follow(
        self,
        order: dict[str, Any],
        lines: list[dict[str, Any]],
        headers: dict[str, str],
        arrived: float,
    ) -> None:
        job = self._job
        total = order.get("total")
        url = f"/orders/{order.get('id')}?wait={job.wait_s:g}"
        while order.get("status") not in _TERMINAL:
            if time.monotonic() - arrived > job.give_up_s:
                self.tally.error("still pending", json.dumps(order))
                return
            status, order, raw = await self._call("GET", url, headers)
            if status != 200:
                self.tally.error(f"read {status}", raw)
                return
        self.tally.settled(arrived, {"total": total, **order}, lines)

    async def closed(self) -> None:
        """``clients`` workers, each placing its next order when the last one ended."""
        numbers = itertools.count()

        async def client() -> None:
            while time.monotonic() < self.tally.window_end:
                await self.place(next(numbers), time.monotonic())

        await asyncio.gather(*(client() for _ in range(self._job.clients)))

    async def open(self) -> None:
        """Orders arriving ``rate`` per second for the duration, however long each takes."""
        job = self._job
        started = self.tally.window_end - job.duration_s
        running: set[asyncio.Task[None]] = set()
        for n in range(round(job.duration_s * job.rate)):
            arrival = started + n / job.rate
            if (delay := arrival - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            self.tally.behind_s = max(self.tally.behind_s, -delay)
            if len(running) >= job.max_in_flight:
                self.tally.error("shed", f"{len(running)} orders in flight")
                continue
            task = asyncio.create_task(self.place(n, arrival))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)


async def drive(job: Job) -> dict[str, Any]:
    """Run ``job`` and return its report."""
    limit = job.clients if job.loop == CLOSED else job.max_in_flight
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=job.wait_s + 15)
    async with aiohttp.ClientSession(job.base_url, connector=connector, timeout=timeout) as session:
        load = OrderLoad(job, session)
        cpu, wall = time.process_time(), time.monotonic()
        load.tally.window_end = wall + job.duration_s
        await (load.closed() if job.loop == CLOSED else load.open())
        wall_s, cpu_s = time.monotonic() - wall, time.process_time() - cpu
    return load.tally.report(job, wall_s, cpu_s)


def main() -> int:
    """Read the job on stdin, drive it, print the report."""
    job = Job(**json.load(sys.stdin))
    try:
        import uvloop  # noqa: PLC0415 - optional: a cheaper event loop when installed

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    report = runner(drive(job))
    print(MARKER + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
