"""The saga journal on the unit of work: checkpoints of many sagas in one transaction.

Hundreds of sagas move at once, and each transition must be durable before the next action
runs; one transaction per transition would cost a commit each. The journal queues them
(:class:`actors._writer.Coalescer`) and commits everything queued in one transaction:
saga states, log entries, order changes and outbox events.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors._writer import Coalescer
from sagas.engine import Checkpoint
from storage.ports import UnitOfWorkFactory
from storage.telemetry import WRITE_BATCH


class UnitOfWorkJournal:
    """Writes checkpoints through units of work, batched.

    Args:
        uow: makes the unit of work of each batch.
        max_batch: the most checkpoints in one transaction.
    """

    def __init__(self, uow: UnitOfWorkFactory, max_batch: int = 512) -> None:
        self._uow = uow
        self._queue: Coalescer[Checkpoint, None] = Coalescer(self._write_all, max_batch=max_batch)

    async def write(self, checkpoint: Checkpoint) -> None:
        """Commit ``checkpoint`` with whatever else is queued.

        Raises:
            StorageError: the batch did not commit (or it is not known whether it did).
        """
        await self._queue.submit(checkpoint)

    async def drained(self) -> None:
        """Return once everything queued so far is written or failed."""
        await self._queue.drained()

    async def _write_all(self, batch: list[Checkpoint]) -> Sequence[None]:
        sagas = {c.saga.id: c.saga for c in batch}  # one row per saga: the latest state
        orders = {c.order.id: c.order for c in batch if c.order is not None}
        async with self._uow() as uow:
            await uow.sagas.save_many(list(sagas.values()))
            await uow.sagas.append_log([e for c in batch for e in c.log])
            await uow.orders.save_many(list(orders.values()))
            await uow.outbox.append([e for c in batch for e in c.events])
            await uow.commit()
        WRITE_BATCH.labels("sagas").observe(len(batch))
        return [None] * len(batch)
