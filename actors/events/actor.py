"""Ray shells of the event side: the relay and one actor per consumer group.

Each runs its loop on a thread of its own, started in ``__init__``: Ray re-runs ``__init__``
when it restarts the actor after a crash, so the loop comes back without anyone calling in.
The actor's methods only report; they never touch the loop's connections.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

from actors.events.service import EventsConfig, RelayState, consumer_name, run_relay, run_worker
from storage.telemetry import configure_logging

RELAY_ACTOR_NAME = "event-relay"


def worker_actor_name(group: str) -> str:
    """The Ray actor name of the consumer group ``group``."""
    return f"event-worker-{group}"


@dataclass(frozen=True, slots=True)
class EventActorInfo:
    """What an event actor reports to operators and the composition root."""

    kind: str
    pid: int
    release: str
    running: bool
    detail: dict[str, Any]


class _Loop:
    """A coroutine run on its own thread and event loop until the process ends."""

    def __init__(self, main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._main = main
        self._thread = threading.Thread(target=self._run, daemon=True, name="events-loop")
        self._thread.start()

    def _run(self) -> None:
        asyncio.run(self._main(asyncio.Event()))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class EventRelayActor:
    """Publishes the outbox, sweeps for lost events, applies retention."""

    def __init__(self, config: EventsConfig, *, release: str = "dev", log_level: str = "INFO"):
        configure_logging(log_level, component=RELAY_ACTOR_NAME)
        self._release = release
        self._state = RelayState()
        self._loop = _Loop(lambda stop: run_relay(config, stop, self._state))

    async def info(self) -> EventActorInfo:
        """This relay's identity and counters."""
        return EventActorInfo(
            "relay", os.getpid(), self._release, self._loop.alive, asdict(self._state)
        )


class EventWorkerActor:
    """One consumer of one consumer group."""

    def __init__(
        self, config: EventsConfig, group: str, *, release: str = "dev", log_level: str = "INFO"
    ):
        configure_logging(log_level, component=worker_actor_name(group))
        self._release = release
        self._group = group
        self._consumer = consumer_name(group)
        self._loop = _Loop(lambda stop: run_worker(config, group, stop, self._consumer))

    async def info(self) -> EventActorInfo:
        """This worker's identity."""
        detail = {"group": self._group, "consumer": self._consumer}
        return EventActorInfo("worker", os.getpid(), self._release, self._loop.alive, detail)
