"""Results: the per-target summary, the printed table, the JSON files and the plot."""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.loadgen import WrkResult

BARE = "bare"
PRODUCT = "product"
TARGETS = (BARE, PRODUCT)
LABELS = {BARE: "bare Serve no-op", PRODUCT: "auth + cached product read"}


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
            "rounds": [r.to_json() for r in self.rounds],
        }


@dataclass(slots=True)
class ModeOutcome:
    """What one ingress mode gave: a summary per target, or the reason it has none."""

    mode: str
    targets: dict[str, TargetSummary] = field(default_factory=dict)
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        """Cached-read requests/s divided by bare requests/s (medians over rounds)."""
        bare, product = self.targets.get(BARE), self.targets.get(PRODUCT)
        if bare is None or product is None or bare.rps == 0:
            return None
        return product.rps / bare.rps

    @property
    def round_ratios(self) -> list[float]:
        """The ratio of each round's pair of runs: how much of the spread is noise."""
        bare, product = self.targets.get(BARE), self.targets.get(PRODUCT)
        if bare is None or product is None:
            return []
        pairs = zip(bare.rounds, product.rounds, strict=True)
        return [p.rps / b.rps for b, p in pairs if b.rps]

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "targets": {name: t.to_json() for name, t in self.targets.items()},
            "ratio_product_to_bare": None if ratio is None else round(ratio, 4),
            "ratio_per_round": [round(r, 4) for r in self.round_ratios],
            "error": self.error,
        }


_HEADER = (
    f"{'mode':<8} {'target':<20} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
    f"{'failed':>7} {'ratio':>6}"
)


def table(outcomes: list[ModeOutcome]) -> str:
    """A plain-text table: per mode and target, req/s, p50/p95/p99, failures and the ratio."""
    lines = [_HEADER, "-" * len(_HEADER)]
    for outcome in outcomes:
        if outcome.error is not None:
            lines.append(f"{outcome.mode:<8} FAILED: {outcome.error.splitlines()[0][:120]}")
            continue
        for name in TARGETS:
            t = outcome.targets[name]
            ratio = f"{outcome.ratio:.2f}" if name == PRODUCT and outcome.ratio else ""
            lines.append(
                f"{outcome.mode:<8} {LABELS[name]:<20} {t.rps:>9.0f} {t.p50_ms:>8.1f} "
                f"{t.p95_ms:>8.1f} {t.p99_ms:>8.1f} {t.failed:>7d} {ratio:>6}"
            )
    return "\n".join(lines)


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


def write_plot(results_dir: Path, outcomes: list[ModeOutcome], title: str) -> Path | None:
    """Bars of requests/s and p99 per target and mode in ``latest.png`` (None: nothing to plot)."""
    measured = [o for o in outcomes if o.error is None]
    if not measured:
        return None
    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    ax_rps, ax_p99 = fig.subplots(1, 2)
    width = 0.38
    xs = list(range(len(measured)))
    for i, name in enumerate(TARGETS):
        offsets = [x + (i - 0.5) * width for x in xs]
        rps = [o.targets[name].rps for o in measured]
        p99 = [o.targets[name].p99_ms for o in measured]
        ax_rps.bar_label(ax_rps.bar(offsets, rps, width, label=LABELS[name]), fmt="%.0f")
        ax_p99.bar_label(ax_p99.bar(offsets, p99, width, label=LABELS[name]), fmt="%.1f")
    modes = [f"{o.mode}\nratio {o.ratio:.2f}" if o.ratio else o.mode for o in measured]
    for ax, ylabel in (
        (ax_rps, "requests/s (higher is better)"),
        (ax_p99, "p99 ms (lower is better)"),
    ):
        ax.set_xticks(xs, modes)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)
    ax_rps.legend(loc="upper right", fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path = results_dir / "latest.png"
    fig.savefig(path, dpi=120)
    return path
