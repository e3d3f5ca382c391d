"""Results: the per-target summary, the printed table, the JSON files and the plot."""

from __future__ import annotations

import json
import shutil
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.loadgen import WrkResult
from benchmarks.order_report import (
    ORDER_HEADER,
    ORDER_NOTE,
    OrderSummary,
    mark_goals,
    order_goals,
    order_lines,
    order_panel_data,
    orders_json,
)

BARE = "bare"
PUBLIC = "public"
PRODUCT = "product"
READ_TARGETS = (BARE, PUBLIC, PRODUCT)
ACTOR = "actor"
PLAIN = "plain"
WRITE_OPS = ("restock", "credit")
SPREADS = ("hot", "many")
MANY = 64  # keys the "many" write targets take in turn
GOALS = {"hot": 0.9, "many": 0.8}  # actor / plain requests/s the shards must keep


def write_target(op: str, spread: str, path: str) -> str:
    """Name of a write target, e.g. ``restock-hot-actor``."""
    return f"{op}-{spread}-{path}"


WRITE_TARGETS = tuple(
    write_target(op, spread, path)
    for op in WRITE_OPS
    for spread in SPREADS
    for path in (ACTOR, PLAIN)
)
LABELS = {
    BARE: "bare Serve no-op",
    PUBLIC: "unauth cached read",
    PRODUCT: "auth + cached read",
    **{t: t.replace("-", " ") for t in WRITE_TARGETS},
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """A target's requests/s divided by its baseline's, and the least it should be."""

    target: str
    baseline: str
    goal: float | None = None

    @property
    def name(self) -> str:
        return f"{self.target}/{self.baseline}"


READ_COMPARISONS = (Comparison(PUBLIC, BARE), Comparison(PRODUCT, BARE))
WRITE_COMPARISONS = tuple(
    Comparison(write_target(op, s, ACTOR), write_target(op, s, PLAIN), GOALS[s])
    for op in WRITE_OPS
    for s in SPREADS
)
COMPARISONS = READ_COMPARISONS + WRITE_COMPARISONS


@dataclass(frozen=True, slots=True)
class TargetSummary:
    """The measured rounds of one target; figures are medians over rounds."""

    url: str
    rounds: tuple[WrkResult, ...]

    def _median(self, name: str) -> float:
        values: list[float] = [getattr(r, name) for r in self.rounds]
        return statistics.median(values)

    @property
    def rps(self) -> float:
        return self._median("rps")

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
    def requests(self) -> int:
        """Requests over all rounds."""
        return sum(r.requests for r in self.rounds)

    @property
    def failed(self) -> int:
        """Failed requests (socket errors, timeouts, non-2xx) over all rounds."""
        return sum(r.failed for r in self.rounds)

    @property
    def non_2xx_by_status(self) -> dict[str, int]:
        """Non-2xx answers over all rounds, by status code."""
        total: Counter[str] = Counter()
        for r in self.rounds:
            total.update(r.non_2xx_by_status)
        return dict(sorted(total.items()))

    @property
    def replayed(self) -> int:
        """Answers marked ``Idempotent-Replayed`` over all rounds (0 when keys are unique)."""
        return sum(r.replayed for r in self.rounds)

    def to_json(self) -> dict[str, Any]:
        """Medians, totals and every round."""
        return {
            "url": self.url,
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "requests": self.requests,
            "failed": self.failed,
            "non_2xx_by_status": self.non_2xx_by_status,
            "replayed": self.replayed,
            "rounds": [r.to_json() for r in self.rounds],
        }


@dataclass(slots=True)
class ModeOutcome:
    """What one ingress mode gave: a summary per target, or the reason it has none.

    ``checks`` holds what the run verified besides speed (writes applied vs answered,
    orders exact); ``orders`` the orders section's targets.
    """

    mode: str
    targets: dict[str, TargetSummary] = field(default_factory=dict)
    error: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    orders: dict[str, OrderSummary] = field(default_factory=dict)

    def measured(self, comparison: Comparison) -> bool:
        """Whether both sides of ``comparison`` were measured."""
        return comparison.target in self.targets and comparison.baseline in self.targets

    def ratio(self, comparison: Comparison) -> float | None:
        """Target requests/s divided by baseline requests/s (medians over rounds)."""
        if not self.measured(comparison):
            return None
        base = self.targets[comparison.baseline].rps
        return self.targets[comparison.target].rps / base if base else None

    def round_ratios(self, comparison: Comparison) -> list[float]:
        """The ratio of each round's pair of runs: how much of the spread is noise."""
        if not self.measured(comparison):
            return []
        pairs = zip(
            self.targets[comparison.baseline].rounds,
            self.targets[comparison.target].rounds,
            strict=True,
        )
        return [t.rps / b.rps for b, t in pairs if b.rps]

    def goal_met(self, comparison: Comparison) -> bool | None:
        """Whether the ratio reaches the goal (None: no goal, or not measured)."""
        ratio = self.ratio(comparison)
        if comparison.goal is None or ratio is None:
            return None
        return ratio >= comparison.goal

    def to_json(self) -> dict[str, Any]:
        ratios = {}
        for c in COMPARISONS:
            ratio = self.ratio(c)
            if ratio is not None:
                ratios[c.name] = {
                    "ratio": round(ratio, 4),
                    "per_round": [round(r, 4) for r in self.round_ratios(c)],
                    "goal": c.goal,
                    "met": self.goal_met(c),
                }
        product = self.ratio(READ_COMPARISONS[1])
        return {
            "targets": {name: t.to_json() for name, t in self.targets.items()},
            "ratios": ratios,
            "ratio_product_to_bare": None if product is None else round(product, 4),
            "orders": orders_json(self.orders) if self.orders else None,
            "checks": self.checks,
            "error": self.error,
        }


_HEADER = (
    f"{'mode':<8} {'target':<20} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
    f"{'failed':>6} {'ratio':>6}  {'goal':<12} {'non-2xx by status'}"
)


def _comparison_of(target: str) -> Comparison | None:
    return next((c for c in COMPARISONS if c.target == target), None)


def _ratio_cells(outcome: ModeOutcome, target: str) -> tuple[str, str]:
    comparison = _comparison_of(target)
    if comparison is None:
        return "", ""
    ratio = outcome.ratio(comparison)
    met = outcome.goal_met(comparison)
    goal = "" if met is None else f">={comparison.goal:.2f} " + ("met" if met else "MISSED")
    return ("" if ratio is None else f"{ratio:.2f}"), goal


def table(outcomes: list[ModeOutcome]) -> str:
    """A plain-text table: per mode and target, req/s, p50/p95/p99, failures, ratio, goal."""
    lines = [_HEADER, "-" * len(_HEADER)]
    if not any(o.targets or o.error for o in outcomes):
        lines = []
    for outcome in outcomes:
        if outcome.error is not None:
            lines.append(f"{outcome.mode:<8} FAILED: {outcome.error.splitlines()[0][:120]}")
        for name in (*READ_TARGETS, *WRITE_TARGETS):
            t = outcome.targets.get(name)
            if t is None:
                continue
            ratio, goal = _ratio_cells(outcome, name)
            statuses = " ".join(f"{s}:{n}" for s, n in t.non_2xx_by_status.items())
            lines.append(
                f"{outcome.mode:<8} {LABELS[name]:<20} {t.rps:>8.0f} {t.p50_ms:>7.1f} "
                f"{t.p95_ms:>7.1f} {t.p99_ms:>7.1f} {t.failed:>6d} {ratio:>6}  {goal:<12} "
                f"{statuses}".rstrip()
            )
        lines.extend(_goal_summary(outcome))
    if any(o.orders for o in outcomes):
        lines.extend([*([""] if lines else []), ORDER_NOTE, ORDER_HEADER, "-" * len(ORDER_HEADER)])
        for outcome in outcomes:
            lines.extend(order_lines(outcome.mode, outcome.orders))
            goals = order_goals(outcome.orders)
            if goals:
                met = sum(g["met"] for g in goals.values())
                lines.append(f"{outcome.mode:<8} order goals: {met}/{len(goals)} met")
    for outcome in outcomes:
        lines.extend(
            f"{outcome.mode:<8} check {k}: {_fields(v)}" for k, v in outcome.checks.items()
        )
    return "\n".join(lines)


def _goal_summary(outcome: ModeOutcome) -> list[str]:
    verdicts = [outcome.goal_met(c) for c in WRITE_COMPARISONS]
    judged = [v for v in verdicts if v is not None]
    if not judged:
        return []
    met = sum(judged)
    line = (
        f"{outcome.mode:<8} write goals (actor/plain >= {GOALS['hot']} hot, "
        f">= {GOALS['many']} many): {met}/{len(judged)} met"
    )
    failed = sum(outcome.targets[t].failed for t in WRITE_TARGETS if t in outcome.targets)
    replayed = sum(outcome.targets[t].replayed for t in WRITE_TARGETS if t in outcome.targets)
    line += f"; write failures {failed}, replayed answers {replayed}"
    return [line]


def _fields(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def document(
    started: datetime, config: dict[str, Any], machine: dict[str, Any], outcomes: list[ModeOutcome]
) -> dict[str, Any]:
    """Everything one run measured, as written to the JSON files."""
    return {
        "started_utc": started.isoformat(timespec="seconds"),
        "config": config,
        "machine": machine,
        "modes": {o.mode: o.to_json() for o in outcomes},
    }


def write_json(results_dir: Path, started: datetime, doc: dict[str, Any]) -> Path:
    """Write ``<UTC timestamp>.json`` and copy it to ``latest.json``; returns the first."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    shutil.copyfile(path, results_dir / "latest.json")
    return path


class Bar(Protocol):
    """What one bar pair shows: a rate and a p99."""

    @property
    def rps(self) -> float: ...

    @property
    def p99_ms(self) -> float: ...


def _bars(
    axes: tuple[Axes, Axes],
    groups: list[str],
    series: Mapping[str, Sequence[Bar]],
    unit: str = "requests/s",
) -> None:
    """Grouped bars of requests/s and p99: one group per x label, one bar per series."""
    ax_rps, ax_p99 = axes
    width = 0.8 / len(series)
    xs = list(range(len(groups)))
    for i, (label, summaries) in enumerate(series.items()):
        offsets = [x + (i - (len(series) - 1) / 2) * width for x in xs]
        rps = [s.rps for s in summaries]
        p99 = [s.p99_ms for s in summaries]
        ax_rps.bar_label(ax_rps.bar(offsets, rps, width, label=label), fmt="%.0f", fontsize=7)
        ax_p99.bar_label(ax_p99.bar(offsets, p99, width, label=label), fmt="%.1f", fontsize=7)
    for ax, ylabel in (
        (ax_rps, f"{unit} (higher is better)"),
        (ax_p99, "p99 ms (lower is better)"),
    ):
        ax.set_xticks(xs, groups, fontsize=8 if len(groups) <= 4 else 7)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)
    ax_rps.legend(loc="upper right", fontsize="small")


def _read_panel(axes: tuple[Axes, Axes], measured: list[ModeOutcome]) -> None:
    groups = [
        o.mode
        + "".join(
            f"\n{LABELS[c.target].split()[0]} {o.ratio(c):.2f}"
            for c in READ_COMPARISONS
            if o.ratio(c) is not None
        )
        for o in measured
    ]
    series = {LABELS[t]: [o.targets[t] for o in measured] for t in READ_TARGETS}
    _bars(axes, groups, series)
    axes[0].set_title("reads (ratio to bare)", fontsize="medium")


def _write_panel(axes: tuple[Axes, Axes], measured: list[ModeOutcome]) -> None:
    pairs = [(o, c) for o in measured for c in WRITE_COMPARISONS if o.measured(c)]
    groups = [
        f"{o.mode}\n{' '.join(c.target.split('-')[:2])}\n{o.ratio(c) or 0:.2f} / {c.goal}"
        for o, c in pairs
    ]
    series = {
        "shards (actor)": [o.targets[c.target] for o, c in pairs],
        "plain UPDATE": [o.targets[c.baseline] for o, c in pairs],
    }
    _bars(axes, groups, series)
    axes[0].set_title("writes (ratio shards / plain, and its goal)", fontsize="medium")


def _order_panel(axes: tuple[Axes, Axes], measured: list[ModeOutcome]) -> None:
    groups, series = order_panel_data([(o.mode, o.orders) for o in measured])
    _bars(axes, groups, series, unit="completed orders/s")
    mark_goals(axes)
    axes[0].set_title(
        "orders, submit to terminal (saga / plain; dotted: issue 5 targets)", fontsize="medium"
    )


def write_plot(results_dir: Path, outcomes: list[ModeOutcome], title: str) -> Path | None:
    """Bars of requests/s and p99 per target and mode in ``latest.png`` (None: nothing to plot).

    One row of two panels per section measured (reads, writes, orders).
    """
    with_reads = [o for o in outcomes if all(t in o.targets for t in READ_TARGETS)]
    with_writes = [o for o in outcomes if any(o.measured(c) for c in WRITE_COMPARISONS)]
    with_orders = [o for o in outcomes if order_panel_data([(o.mode, o.orders)])[0]]
    panels = [
        (p, m)
        for p, m in (
            (_read_panel, with_reads),
            (_write_panel, with_writes),
            (_order_panel, with_orders),
        )
        if m
    ]
    if not panels:
        return None
    per_mode = {_read_panel: 1, _write_panel: len(WRITE_COMPARISONS), _order_panel: 2}
    widest = max(len(m) * per_mode[p] for p, m in panels)
    fig = Figure(figsize=(max(13.0, 1.9 * widest), 4.6 * len(panels)))
    FigureCanvasAgg(fig)
    rows = fig.subplots(len(panels), 2, squeeze=False)
    for (panel, measured), row in zip(panels, rows, strict=True):
        panel((row[0], row[1]), measured)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path = results_dir / "latest.png"
    fig.savefig(path, dpi=120)
    return path
