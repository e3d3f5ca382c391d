"""What every actor shell does around its service: build it once, measure each call.

:class:`ShardActor` is the shell of a single-writer shard (inventory, wallets): Ray applies
``ray.remote`` with its options in the composition root; the shell builds the service on
first use (Ray re-runs ``__init__`` after a crash, and the first call reloads), takes
commands in lists, and hands its keys over when it is replaced (:meth:`ShardActor.retire`).
"""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from actors._ops import Outcome, WrongShardError
from actors.placement import Partitioning
from storage.connections import ConnectionConfig, Connections
from storage.telemetry import ACTOR_CALLS, ACTOR_LATENCY, configure_logging

S = TypeVar("S")
T = TypeVar("T")


class ShardService(Protocol):
    """What a shard shell needs of its service (a :class:`ShardWriter`, an orchestrator)."""

    @property
    def entities(self) -> Mapping[Any, Any]:
        """What it holds in memory."""
        ...

    async def submit(self, commands: Sequence[Any]) -> list[Outcome | Exception]:
        """Apply commands; one outcome (or error) each."""
        ...

    async def drained(self) -> None:
        """Return once everything queued so far is done."""
        ...


W = TypeVar("W", bound=ShardService)


class LazyService(Generic[S]):
    """A service built on first use, inside the actor's event loop, exactly once.

    Ray runs ``__init__`` outside the actor's loop, so loading rows or keys happens here,
    on the first call (also the first call after Ray restarted the actor).
    """

    def __init__(self, build: Callable[[], Awaitable[S]]) -> None:
        self._build = build
        self._service: S | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> S:
        """The service, building it if no call has yet."""
        if self._service is not None:
            return self._service
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._service is None:
                self._service = await self._build()
        return self._service


async def measured(kind: str, method: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call``, counting it by outcome and timing it, under the actor's metric labels."""
    started, outcome = time.perf_counter(), "error"
    try:
        result = await call()
        outcome = "ok"
        return result
    finally:
        ACTOR_CALLS.labels(kind, method, outcome).inc()
        ACTOR_LATENCY.labels(kind, method).observe(time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """What a shard reports to operators, readiness checks and the composition root.

    Attributes:
        kind: what the shard owns (``inventory``, ``wallets``).
        shard: its index.
        pid: its process id.
        partitions: how many partitions it owns.
        shards: how many shards of its kind the layout has.
        entities: rows it holds in memory.
        release: the code release it runs.
        retired: whether it has handed its keys over.
    """

    kind: str
    shard: int
    pid: int
    partitions: int
    shards: int
    entities: int
    release: str
    retired: bool


class ShardActor(ABC, Generic[W]):
    """Single writer of one shard's keys: commands in, outcomes out.

    The service is a :class:`actors._writer.ShardWriter` (inventory, wallets) or an
    orchestrator (:mod:`sagas.orchestrator`).

    Args:
        shard: this shard's index.
        partitioning: the layout shared by every process.
        connections: PostgreSQL and Redis.
        release: the code release this process runs (a replaced shard reports the old one).
        log_level: structlog level.
    """

    kind = "shard"
    actor_name: Callable[[int], str] = staticmethod(lambda shard: f"shard-{shard}")

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        connections: ConnectionConfig,
        *,
        release: str = "dev",
        log_level: str = "INFO",
    ) -> None:
        configure_logging(log_level, component=self.actor_name(shard))
        self._conn = Connections(connections)
        self._partitioning = partitioning
        self._shard = shard
        self._release = release
        self._retired = False
        self._service: LazyService[W] = LazyService(self._build)

    @abstractmethod
    async def _build(self) -> W:
        """The shard's service, loaded and ready."""

    async def info(self) -> ShardInfo:
        """This shard's identity and load; answers once the service is built."""

        async def call() -> ShardInfo:
            service = await self._service.get()
            return ShardInfo(
                kind=self.kind,
                shard=self._shard,
                pid=os.getpid(),
                partitions=len(self._partitioning.partitions_of(self._shard)),
                shards=self._partitioning.shards,
                entities=len(service.entities),
                release=self._release,
                retired=self._retired,
            )

        return await measured(self.kind, "info", call)

    async def apply(self, commands: Sequence[Any]) -> list[Outcome | Exception]:
        """Apply commands in arrival order; one outcome (or error) per command.

        A retired shard applies nothing and answers :class:`WrongShardError` (retryable).
        """

        async def call() -> list[Outcome | Exception]:
            service = await self._service.get()
            if self._retired:  # checked after the last await: nothing slips in after retire
                shards = self._partitioning.shards
                return [WrongShardError(str(c.op.key), self._shard, shards) for c in commands]
            return await service.submit(commands)

        return await measured(self.kind, "apply", call)

    async def retire(self) -> None:
        """Hand the keys over: refuse new commands and wait for queued ones to commit.

        After this returns, nothing this process does changes a row, so a replacement can
        start writing; a writer that still did would fail its version check anyway.
        """

        async def call() -> None:
            self._retired = True
            service = await self._service.get()
            await service.drained()

        await measured(self.kind, "retire", call)
