"""The load generator: wrk in its own process, reporting through ``wrk_report.lua``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("wrk_report.lua")
_MARKER = "WRK_JSON "


class LoadGenError(RuntimeError):
    """wrk is missing, failed, or printed no report."""


@dataclass(frozen=True, slots=True)
class WrkOptions:
    """How hard and how long wrk drives one target.

    Attributes:
        duration_s: length of one measured run.
        connections: open connections, each with one request in flight (closed loop).
        threads: wrk threads.
        timeout_s: a request slower than this counts as a timeout error.
    """

    duration_s: int = 10
    connections: int = 16
    threads: int = 1
    timeout_s: int = 5


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: throughput, latency in milliseconds, and every kind of error."""

    url: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        """Socket errors, timeouts and non-2xx answers (wrk's ``status`` is a subset of these)."""
        e = self.errors
        return e["connect"] + e["read"] + e["write"] + e["timeout"] + e["non_2xx"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the total of failed requests."""
        return {**asdict(self), "failed": self.failed}

    @classmethod
    def parse(cls, url: str, stdout: str) -> WrkResult:
        """Read the report line that ``wrk_report.lua`` printed."""
        for line in stdout.splitlines():
            if line.startswith(_MARKER):
                data = json.loads(line[len(_MARKER) :])
                latency = data["latency_ms"]
                return cls(
                    url=url,
                    requests=int(data["requests"]),
                    duration_s=float(data["duration_s"]),
                    rps=float(data["rps"]),
                    p50_ms=latency["p50"],
                    p90_ms=latency["p90"],
                    p95_ms=latency["p95"],
                    p99_ms=latency["p99"],
                    mean_ms=latency["mean"],
                    max_ms=latency["max"],
                    errors={k: int(v) for k, v in data["errors"].items()},
                )
        raise LoadGenError(f"wrk printed no report for {url}:\n{stdout[-2000:]}")


def wrk_binary() -> str:
    """Path of ``wrk`` (``cluster/system-deps.sh`` installs it)."""
    found = shutil.which("wrk")
    if found is None:
        raise LoadGenError("wrk not found: install it (`make install` does it with apt)")
    return found


def wrk_version() -> str:
    """First line of ``wrk -v``."""
    done = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip()


def run_wrk(url: str, options: WrkOptions, headers: Mapping[str, str] | None = None) -> WrkResult:
    """Drive ``url`` with wrk for ``options.duration_s`` seconds and return its figures."""
    args = [
        wrk_binary(),
        *(f"-H{name}: {value}" for name, value in (headers or {}).items()),
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{options.duration_s}s",
        f"--timeout={options.timeout_s}s",
        "--latency",
        "-s",
        str(SCRIPT),
        url,
    ]
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        timeout=options.duration_s + options.timeout_s + 30,
    )
    if done.returncode != 0:
        raise LoadGenError(f"wrk failed on {url} ({done.returncode}):\n{done.stderr.strip()}")
    return WrkResult.parse(url, done.stdout)
