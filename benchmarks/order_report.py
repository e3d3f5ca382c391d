"""The orders section's results: runs, summaries, goals, table lines and the plot panel.

A run is one :mod:`benchmarks.orderload` report. Its throughput is orders seen CONFIRMED
per second ("completed sagas/s": in a closed loop those within the run's window, in an
open loop every arrival, all of which fall in the window); its latencies are submit to
terminal status (CONFIRMED or FAILED) seen by the client, in milliseconds. FAILED orders
and errors (non-2xx answers, transport errors, orders still pending after the give-up
time, open-loop arrivals shed) are counted apart.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from matplotlib.axes import Axes

SAGA, PLAIN = "saga", "plain"
CLOSED, OPEN = "closed", "open"
ORDER_PATHS = (SAGA, PLAIN)
LOOPS = (CLOSED, OPEN)
SKUS_PER_PATH = 8  # few, so that orders meet on the same rows
GOAL_SAGAS_PER_S = 300.0  # closed loop, through the saga (issue 5)
GOAL_OPEN_P99_MS = 250.0  # at the open loop's fixed rate, through the saga (issue 5)


def order_target(path: str, loop: str) -> str:
    """Name of an orders target, e.g. ``order-saga-closed``."""
    return f"order-{path}-{loop}"


ORDER_TARGETS = tuple(order_target(p, loop) for loop in LOOPS for p in ORDER_PATHS)


@dataclass(frozen=True, slots=True)
class OrderRun:
    """One run of the orders load generator (latencies in milliseconds).

    Attributes:
        cpu_s: the load generator's CPU time while it drove the run.
        cpu_total_s: its CPU time in all, start-up included.
        behind_ms: open loop: the most an arrival was started late.
    """

    path: str
    loop: str
    duration_s: float
    clients: int | None
    rate: float | None
    submitted: int
    confirmed: int
    failed: int
    failed_by_reason: dict[str, int]
    errors: dict[str, int]
    error_samples: dict[str, str]
    confirmed_in_window: int
    sagas_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    units: dict[str, int]
    money: int
    behind_ms: float
    wall_s: float
    cpu_s: float
    cpu_total_s: float

    @classmethod
    def parse(cls, data: dict[str, Any]) -> OrderRun:
        """Read a load generator's report."""
        latency: dict[str, Any] = {f"{k}_ms": float(v) for k, v in data.pop("latency_ms").items()}
        return cls(**data, **latency)

    @property
    def rps(self) -> float:
        """Completed (CONFIRMED) orders per second."""
        return self.sagas_per_s

    @property
    def error_count(self) -> int:
        """Orders that ended in an error instead of a status."""
        return sum(self.errors.values())

    @property
    def cpu_share(self) -> float:
        """The load generator's CPU time per second of the run (1.0: one core)."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "cpu_share": round(self.cpu_share, 3)}


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """The measured runs of one orders target; figures are medians over rounds."""

    url: str
    rounds: tuple[OrderRun, ...]

    def _median(self, name: str) -> float:
        values: list[float] = [getattr(r, name) for r in self.rounds]
        return statistics.median(values)

    @property
    def rps(self) -> float:
        """Completed orders per second."""
        return self._median("sagas_per_s")

    @property
    def p50_ms(self) -> float:
        return self._median("p50_ms")

    @property
    def p95_ms(self) -> float:
        return self._median("p95_ms")

    @property
    def p99_ms(self) -> float:
        return self._median("p99_ms")

    @property
    def cpu_share(self) -> float:
        """The load generator's CPU share of one core."""
        return self._median("cpu_share")

    @property
    def confirmed(self) -> int:
        return sum(r.confirmed for r in self.rounds)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rounds)

    @property
    def errors(self) -> dict[str, int]:
        """Errors over all rounds, by kind."""
        total: Counter[str] = Counter()
        for r in self.rounds:
            total.update(r.errors)
        return dict(sorted(total.items()))

    @property
    def error_samples(self) -> dict[str, str]:
        """The first answer of each kind of error, over all rounds."""
        samples: dict[str, str] = {}
        for r in self.rounds:
            samples = r.error_samples | samples
        return samples

    def to_json(self) -> dict[str, Any]:
        """Medians, totals and every round."""
        return {
            "url": self.url,
            "sagas_per_s": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "confirmed": self.confirmed,
            "failed": self.failed,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "loadgen_cpu_share": round(self.cpu_share, 3),
            "rounds": [r.to_json() for r in self.rounds],
        }


def order_ratio(orders: dict[str, OrderSummary], loop: str, figure: str = "rps") -> float | None:
    """Saga / plain ``figure`` (``rps`` or ``p99_ms``) in ``loop`` (None: not both measured).

    In the open loop both paths complete the offered rate: compare their latencies there.
    """
    saga, plain = orders.get(order_target(SAGA, loop)), orders.get(order_target(PLAIN, loop))
    if saga is None or plain is None or not getattr(plain, figure):
        return None
    ratio: float = getattr(saga, figure) / getattr(plain, figure)
    return ratio


def order_goals(orders: dict[str, OrderSummary]) -> dict[str, dict[str, Any]]:
    """The issue's targets for the saga path, and whether they were met."""
    goals: dict[str, dict[str, Any]] = {}
    if (closed := orders.get(order_target(SAGA, CLOSED))) is not None:
        goals["saga closed sagas/s"] = {
            "value": round(closed.rps, 1),
            "goal": f">= {GOAL_SAGAS_PER_S:.0f}",
            "met": closed.rps >= GOAL_SAGAS_PER_S,
        }
    if (opened := orders.get(order_target(SAGA, OPEN))) is not None:
        goals["saga open p99 ms"] = {
            "value": round(opened.p99_ms, 1),
            "goal": f"< {GOAL_OPEN_P99_MS:.0f}",
            "met": opened.p99_ms < GOAL_OPEN_P99_MS,
        }
    return goals


def orders_json(orders: dict[str, OrderSummary]) -> dict[str, Any]:
    """The orders section of a mode in the JSON document."""
    rates = {loop: order_ratio(orders, loop) for loop in LOOPS}
    p99s = {loop: order_ratio(orders, loop, "p99_ms") for loop in LOOPS}
    return {
        "targets": {name: s.to_json() for name, s in orders.items()},
        "rate_saga_to_plain": {k: round(v, 4) for k, v in rates.items() if v is not None},
        "p99_saga_to_plain": {k: round(v, 4) for k, v in p99s.items() if v is not None},
        "goals": order_goals(orders),
    }


ORDER_HEADER = (
    f"{'mode':<8} {'orders target':<20} {'sagas/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
    f"{'p99 ms':>7} {'failed':>6} {'errors':>6} {'ratio':>6}  {'goal':<14} {'loadgen cpu'}"
)
ORDER_NOTE = (
    "ratio saga / plain: closed loop sagas/s (higher is better), open loop p99 (lower is better)"
)


def _label(summary: OrderSummary, path: str, loop: str) -> str:
    first = summary.rounds[0]
    load = f"c{first.clients}" if loop == CLOSED else f"{first.rate:g}/s"
    return f"{path} {loop} {load}"


def _goal_cell(orders: dict[str, OrderSummary], path: str, loop: str) -> str:
    if path != SAGA:
        return ""
    goals = order_goals(orders)
    found = goals.get("saga closed sagas/s" if loop == CLOSED else "saga open p99 ms")
    if found is None:
        return ""
    return f"{found['goal'].replace(' ', '')} " + ("met" if found["met"] else "MISSED")


def order_lines(mode: str, orders: dict[str, OrderSummary]) -> list[str]:
    """Table lines of one mode's orders targets (none if it has none)."""
    lines = []
    for loop in LOOPS:
        for path in ORDER_PATHS:
            s = orders.get(order_target(path, loop))
            if s is None:
                continue
            ratio = order_ratio(orders, loop, "rps" if loop == CLOSED else "p99_ms")
            ratio = ratio if path == SAGA else None
            errors = sum(s.errors.values())
            lines.append(
                f"{mode:<8} {_label(s, path, loop):<20} {s.rps:>8.1f} {s.p50_ms:>7.1f} "
                f"{s.p95_ms:>7.1f} {s.p99_ms:>7.1f} {s.failed:>6d} {errors:>6d} "
                f"{'' if ratio is None else f'{ratio:.2f}':>6}  "
                f"{_goal_cell(orders, path, loop):<14} {100 * s.cpu_share:.0f}% of a core"
            )
            if s.errors:
                kinds = " ".join(f"{k}:{n}" for k, n in s.errors.items())
                lines.append(f"{mode:<8}   errors of {path} {loop}: {kinds}")
    return lines


def order_panel_data(
    measured: list[tuple[str, dict[str, OrderSummary]]],
) -> tuple[list[str], dict[str, list[OrderSummary]]]:
    """Groups (mode and loop, with the ratio) and series (saga, plain) of the orders panel."""
    groups: list[str] = []
    series: dict[str, list[OrderSummary]] = {"saga (actors)": [], "plain transaction": []}
    for mode, orders in measured:
        for loop in LOOPS:
            saga, plain = (orders.get(order_target(p, loop)) for p in ORDER_PATHS)
            if saga is None or plain is None:
                continue
            if loop == CLOSED:
                ratio = f"rate x{order_ratio(orders, loop) or 0.0:.2f}"
            else:
                ratio = f"p99 x{order_ratio(orders, loop, 'p99_ms') or 0.0:.1f}"
            groups.append(f"{mode}\n{_label(saga, '', loop).strip()}\n{ratio}")
            series["saga (actors)"].append(saga)
            series["plain transaction"].append(plain)
    return groups, series


def mark_goals(axes: tuple[Axes, Axes]) -> None:
    """The issue's two targets as lines on the orders panel."""
    axes[0].axhline(GOAL_SAGAS_PER_S, color="grey", linestyle=":", linewidth=1)
    axes[1].axhline(GOAL_OPEN_P99_MS, color="grey", linestyle=":", linewidth=1)
