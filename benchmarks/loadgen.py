"""The load generator: wrk in its own process, reporting through ``wrk_report.lua``.

Reads repeat one request; writes (:class:`WriteLoad`) go through ``wrk_write.lua``, which
builds every request in Lua so that each carries an ``Idempotency-Key`` of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("wrk_report.lua")
WRITE_SCRIPT = Path(__file__).with_name("wrk_write.lua")
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
    non_2xx_by_status: dict[str, int] = field(default_factory=dict)
    replayed: int = 0

    @property
    def failed(self) -> int:
        """Socket errors, timeouts and non-2xx answers (wrk's ``status`` is a subset of these)."""
        e = self.errors
        return e["connect"] + e["read"] + e["write"] + e["timeout"] + e["non_2xx"]

    @property
    def answered_2xx(self) -> int:
        """Requests answered with a 2xx status."""
        return self.requests - self.errors["non_2xx"]

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
                    non_2xx_by_status={
                        k: int(v) for k, v in data.get("non_2xx_by_status", {}).items()
                    },
                    replayed=int(data.get("replayed", 0)),
                )
        raise LoadGenError(f"wrk printed no report for {url}:\n{stdout[-2000:]}")


@dataclass(frozen=True, slots=True)
class WriteLoad:
    """Unique writes: ``method`` on ``path_prefix + key + path_suffix`` with ``body``.

    The keys are taken in turn, one per request (one key: a single hot row), and each
    request gets an ``Idempotency-Key`` no other request of any run has.
    """

    method: str
    path_prefix: str
    path_suffix: str
    body: str
    keys: tuple[str, ...]

    def script_args(self) -> list[str]:
        """Arguments of ``wrk_write.lua``, with a fresh run id (keys unique across runs)."""
        run_id = uuid.uuid4().hex[:16]
        return [run_id, self.method, self.path_prefix, self.path_suffix, self.body, *self.keys]


@dataclass(frozen=True, slots=True)
class Target:
    """What wrk drives: a URL, the headers, and for writes the requests it generates."""

    url: str
    headers: Mapping[str, str]
    load: WriteLoad | None = None


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


def run_wrk(
    url: str,
    options: WrkOptions,
    headers: Mapping[str, str] | None = None,
    load: WriteLoad | None = None,
) -> WrkResult:
    """Drive ``url`` with wrk for ``options.duration_s`` seconds and return its figures.

    With ``load``, wrk sends its writes to ``url``'s host instead of repeating ``url``.
    """
    args = [
        wrk_binary(),
        *(f"-H{name}: {value}" for name, value in (headers or {}).items()),
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{options.duration_s}s",
        f"--timeout={options.timeout_s}s",
        "--latency",
        "-s",
        str(SCRIPT if load is None else WRITE_SCRIPT),
        url,
        *([] if load is None else ["--", *load.script_args()]),
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
