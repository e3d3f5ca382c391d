"""Writes from the gateway to the shard that owns the key: batched, retried, never doubled.

Concurrent requests of one replica bound for the same shard go as one actor call (a
:class:`actors._writer.Coalescer` per shard, one call in flight at a time), which is what
keeps a Ray actor hop (about 1 ms and half a core-millisecond) affordable per write.
Every command carries its idempotency key, so a call that failed in a way that may or may
not have applied it (the actor died, the shard was handing over) is simply sent again:
the owner answers a repeated key with the first outcome. When the shards were replaced by a
different number of them (a handoff), the first answer from a new shard says how many
there are now, and the router recomputes owners from that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import ray
import structlog
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from actors._ops import OperationInProgressError, Outcome, WrongShardError
from actors._writer import Coalescer
from actors.placement import Partitioning
from storage.telemetry import SHARD_RETRIES

log = structlog.get_logger(__name__)
HandleGetter = Callable[[str], Awaitable[Any]]


class ActorDirectory:
    """Named actor handles, looked up once and kept (a restarted actor keeps its handle).

    Args:
        namespace: the Ray namespace of shoal's named actors.
    """

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._handles: dict[str, Any] = {}

    async def get(self, name: str) -> Any:
        """The handle of the actor named ``name``.

        Raises:
            ValueError: no actor has that name.
        """
        handle = self._handles.get(name)
        if handle is None:
            handle = await asyncio.to_thread(ray.get_actor, name, namespace=self._namespace)
            self._handles[name] = handle
        return handle

    def forget(self, name: str) -> None:
        """Look ``name`` up again next time (its actor was replaced)."""
        self._handles.pop(name, None)

    async def all_answer(self, names: tuple[str, ...]) -> None:
        """Return once every named actor has answered ``info``."""
        handles = [await self.get(n) for n in names]
        await asyncio.gather(*(h.info.remote() for h in handles))


def is_retryable(exc: BaseException) -> bool:
    """Whether sending the same command again may succeed (and cannot apply it twice)."""
    if isinstance(exc, RayActorError | ActorUnavailableError):
        return True
    if isinstance(exc, OperationInProgressError):
        return False  # the client is told (409 + Retry-After), as the API says
    return bool(getattr(exc, "retryable", False))


class ShardRouter:
    """Sends commands of one kind (inventory, wallets) to their owning shards.

    Args:
        kind: what the shards own, for metrics and logs.
        name_of: the shard actor's name of a shard index.
        partitioning: the layout to route with until a shard says it changed.
        handle: returns the actor handle of a name.
        forget: drops a cached handle (after its actor died for good and was replaced).
        retry_for_s: how long one command is retried before the caller gets 503.
        in_flight: actor calls per shard this replica keeps in flight at once (one: the
            requests that arrive while a call is out go together in the next one).
    """

    def __init__(
        self,
        kind: str,
        name_of: Callable[[int], str],
        partitioning: Partitioning,
        handle: HandleGetter,
        forget: Callable[[str], None],
        *,
        retry_for_s: float = 10.0,
        in_flight: int = 1,
    ) -> None:
        self.kind = kind
        self._name_of = name_of
        self._handle = handle
        self._forget = forget
        self._retry_for_s = retry_for_s
        self._in_flight = in_flight
        self._layout(partitioning)

    def names(self) -> tuple[str, ...]:
        """The shard actors' names in the current layout."""
        return tuple(self._name_of(i) for i in range(self.partitioning.shards))

    def _layout(self, partitioning: Partitioning) -> None:
        self.partitioning = partitioning
        self._queues = [
            Coalescer(self._sender(self._name_of(i)), max_batch=256, concurrency=self._in_flight)
            for i in range(partitioning.shards)
        ]

    def _sender(self, name: str) -> Callable[[list[Any]], Awaitable[list[Outcome | Exception]]]:
        async def send(commands: list[Any]) -> list[Outcome | Exception]:
            try:
                handle = await self._handle(name)
            except ValueError:  # no actor of that name: replaced by fewer shards, or starting
                raise WrongShardError(name, -1, await self._current_shards()) from None
            try:
                results: list[Outcome | Exception] = await handle.apply.remote(commands)
            except ActorDiedError:
                self._forget(name)  # replaced by a new actor of the same name: look it up again
                raise
            return results

        return send

    async def _current_shards(self) -> int:
        """How many shards the layout has now, as shard 0 says (else: as far as known)."""
        try:
            first = await self._handle(self._name_of(0))
            info = await first.info.remote()
        except (ValueError, RayActorError, ActorUnavailableError):
            return self.partitioning.shards
        return int(info.shards)

    async def refresh(self) -> tuple[str, ...]:
        """Adopt the shard count shard 0 reports; return the shards' names in that layout."""
        self._adopt(await self._current_shards())
        return self.names()

    def _adopt(self, shards: int) -> None:
        """Route with ``shards`` shards from now on, if that is a change."""
        if shards != self.partitioning.shards:
            log.info("shard_layout_changed", kind=self.kind, shards=shards)
            self._layout(Partitioning(self.partitioning.partitions, shards))

    async def owner(self, key: str) -> Any:
        """The actor handle of the shard that owns ``key`` in the current layout.

        Raises:
            ValueError: no actor of that name (starting, or replaced by fewer shards).
        """
        return await self._handle(self._name_of(self.partitioning.owner_of(key)))

    async def apply(self, key: str, command: Any) -> Outcome:
        """Apply ``command`` at the owner of ``key``, retrying retryable failures.

        Raises:
            Exception: the last failure, when retries ran out or it is not retryable.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_delay(self._retry_for_s),
            wait=wait_random_exponential(multiplier=0.05, max=1.0),
            before_sleep=lambda state: self._retrying(state.outcome),
            reraise=True,
        ):
            with attempt:
                return await self._queues[self.partitioning.owner_of(key)].submit(command)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _retrying(self, outcome: Any) -> None:
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, WrongShardError):
            self._adopt(exc.shards)
        SHARD_RETRIES.labels(self.kind, type(exc).__name__).inc()
        log.info("shard_call_retry", kind=self.kind, error=type(exc).__name__)
