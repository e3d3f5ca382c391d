"""The orchestrator actor: a thin Ray shell around :class:`OrchestratorService`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import ray

from actors._shell import ShardActor, measured
from actors.inventory.actor import shard_actor_name
from actors.payments.actor import wallet_actor_name
from actors.placement import Partitioning
from actors.router import ActorDirectory, ShardRouter
from sagas.definition import SagaState
from sagas.orchestrator import OrchestratorService
from sagas.orders import OrderSteps
from storage.connections import ConnectionConfig
from storage.products import SqlUnitOfWorkFactory
from storage.records import SagaRecord
from storage.telemetry import SAGA_STEP_SECONDS, SAGA_TRANSITIONS

_STEP_ENDS = ("succeeded", "step_failed", "compensated", "stuck")


def orchestrator_actor_name(shard: int) -> str:
    """The Ray actor name of orchestrator shard ``shard``."""
    return f"orchestrator-{shard}"


@dataclass(frozen=True, slots=True)
class OrchestratorConfig:
    """What an orchestrator needs besides its shard and connections (picklable values).

    Attributes:
        namespace: the Ray namespace of the shards it calls.
        inventory_shards: inventory shards in the layout (until they say otherwise).
        wallet_shards: wallet shards in the layout (until they say otherwise).
        partitions: the fixed number of partitions keys hash to.
        currency: the deployment's one currency.
        saga_timeout_s: how long PlaceOrder may take before it fails with ``timeout``.
        step_timeout_s: the longest one try of one step may take.
    """

    namespace: str
    inventory_shards: int
    wallet_shards: int
    partitions: int
    currency: str = "USD"
    saga_timeout_s: float = 30.0
    step_timeout_s: float = 5.0


class SagaMetrics:
    """Counts transitions and times steps, by saga kind and step name (bounded labels)."""

    def __init__(self) -> None:
        self._since: dict[UUID, float] = {}

    def transition(self, saga: SagaState, transition: str, step: str | None) -> None:
        """Record one transition of ``saga``."""
        now = time.monotonic()
        SAGA_TRANSITIONS.labels(saga.kind, transition, step or "-").inc()
        started = self._since.get(saga.id)
        if transition in _STEP_ENDS and started is not None and step is not None:
            SAGA_STEP_SECONDS.labels(saga.kind, step).observe(now - started)
        if transition in ("completed", "failed"):
            self._since.pop(saga.id, None)
        else:
            self._since[saga.id] = now


class OrchestratorActor(ShardActor[OrchestratorService]):
    """Runs the sagas of one shard's orders."""

    kind = "orders"
    actor_name = staticmethod(orchestrator_actor_name)

    def __init__(
        self,
        shard: int,
        partitioning: Partitioning,
        connections: ConnectionConfig,
        config: OrchestratorConfig,
        *,
        release: str = "dev",
        log_level: str = "INFO",
    ) -> None:
        super().__init__(shard, partitioning, connections, release=release, log_level=log_level)
        self._config = config
        # Build (and resume the unfinished sagas) as soon as the actor runs, also after Ray
        # restarted it: not at the first call, which may be long in coming.
        ray.get_runtime_context().current_actor.info.remote()

    async def _build(self) -> OrchestratorService:
        config, directory = self._config, ActorDirectory(self._config.namespace)

        def router(kind: str, name: Callable[[int], str], shards: int) -> ShardRouter:
            layout = Partitioning(config.partitions, shards)
            # A short retry: the saga step retries too, and its try has a timeout.
            return ShardRouter(
                kind,
                name,
                layout,
                directory.get,
                directory.forget,
                retry_for_s=2.0,
            )

        steps = OrderSteps(
            router("inventory", shard_actor_name, config.inventory_shards),
            router("wallets", wallet_actor_name, config.wallet_shards),
        )
        service = OrchestratorService(
            self._shard,
            self._partitioning,
            SqlUnitOfWorkFactory(self._conn.engine),
            steps,
            currency=config.currency,
            saga_timeout_s=config.saga_timeout_s,
            step_timeout_s=config.step_timeout_s,
            observer=SagaMetrics(),
        )
        await service.resume()
        return service

    async def wait(self, order_ids: Sequence[UUID], timeout_s: float) -> None:
        """Return when no saga of ``order_ids`` runs here, or after ``timeout_s`` seconds."""

        async def call() -> None:
            service = await self._service.get()
            await service.wait(order_ids, min(timeout_s, 30.0))

        await measured(self.kind, "wait", call)

    async def retry(self, saga_id: UUID) -> SagaRecord:
        """Resume a STUCK saga (an operator's command).

        Raises:
            SagaStateError: it is not STUCK here.
        """

        async def call() -> SagaRecord:
            service = await self._service.get()
            return (await service.engine.retry(saga_id)).to_record()

        return await measured(self.kind, "retry", call)

    async def abort(self, saga_id: UUID) -> SagaRecord:
        """Undo a running or STUCK saga and fail it as ``aborted`` (an operator's command).

        Raises:
            SagaStateError: it has finished, or did something that cannot be undone.
        """

        async def call() -> SagaRecord:
            service = await self._service.get()
            return (await service.engine.abort(saga_id)).to_record()

        return await measured(self.kind, "abort", call)
