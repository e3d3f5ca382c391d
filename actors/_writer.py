"""Group commit for single-writer shards: queued commands go to PostgreSQL in batches.

No library fits: what is needed is a queue whose consumer takes *everything* queued each
time it comes back (no timer, no fixed size), so a lone call goes at once and calls that
arrive during a commit share the next one. :class:`Coalescer` is that queue (the gateway
uses it too, to send a shard many calls in one actor call); :class:`ShardWriter` is the
commit loop of a shard on top of it.

A batch is one transaction: the commands are decided against the shard's in-memory rows,
their outcomes recorded under their idempotency keys, the changed rows stored with a
compare-and-set on their version, the events the changes publish written to the outbox,
and everything committed at once. Rows change in memory
only after the commit; a failed batch drops the rows it touched, so they are read again
from PostgreSQL (the truth) before the next decision about them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import structlog

from actors._ops import (
    FENCED,
    Draft,
    FencedRefusal,
    IdempotencyConflictError,
    Operation,
    OperationInProgressError,
    Outcome,
    Refusal,
)
from storage.errors import StaleWriteError, StorageUnavailableError
from storage.ports import UnitOfWork, UnitOfWorkFactory
from storage.records import OperationRecord
from storage.telemetry import WRITE_BATCH

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
E = TypeVar("E")
log = structlog.get_logger(__name__)

Result = Outcome | Exception


class Coalescer(Generic[T, R]):
    """Hands submitted items to ``handle`` in lists, at most ``concurrency`` lists at a time.

    Args:
        handle: takes a list of items and returns one result (or exception) per item.
        max_batch: the most items in one list.
        concurrency: lists handled at once (1: strictly one after another).
    """

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 512,
        concurrency: int = 1,
    ) -> None:
        self._handle = handle
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result.

        Raises:
            Exception: what ``handle`` gave (or raised) for this item.
        """
        return await self.enqueue(item)

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` now (no await in between); the future gets its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if len(self._running) < self._concurrency:
            self._running.add(asyncio.create_task(self._drain()))
        return future

    async def drained(self) -> None:
        """Return once everything queued so far has been handled."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._send_one_batch()
        finally:
            # Leave the running set in the same step as the last look at the queue: an item
            # queued after that look starts a new drain, none waits for a callback.
            self._running.discard(asyncio.current_task())

    async def _send_one_batch(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while self._queue and len(batch) < self._max_batch:
            item, future = self._queue.popleft()
            if not future.cancelled():  # its caller went away before it was sent
                batch.append((item, future))
        if not batch:
            return
        try:
            results: Sequence[R | BaseException] = await self._handle([i for i, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class Command(Protocol):
    """A write command: it carries its operation.

    A command may also have an ``undoes`` attribute: the key of the operation it
    compensates (a release undoes a reservation). Such a command applies only if that
    operation was applied; if it never arrived, its key is *fenced* (recorded as refused)
    so that it cannot apply later either, whatever the network delays.
    """

    @property
    def op(self) -> Operation:
        """The command's idempotency key and fingerprint."""
        ...


C = TypeVar("C", bound=Command)


class ShardWriter(ABC, Generic[K, E, C]):
    """The commit loop of one shard: decides commands in batches, commits each batch once.

    Subclasses say which entity a command touches, how entities are loaded and stored, and
    the business rule (:meth:`decide`); this class does batching, idempotency, the version
    compare-and-set and recovery.

    Args:
        uow: makes the unit of work of each batch.
        max_batch: the most commands committed in one transaction.
    """

    attempts = 5
    kind = "shard"

    def __init__(self, uow: UnitOfWorkFactory, max_batch: int = 512) -> None:
        self._uow = uow
        self.entities: dict[K, E] = {}
        self._coalescer: Coalescer[C, Result] = Coalescer(self._run, max_batch=max_batch)

    async def submit(self, commands: Sequence[C]) -> list[Result]:
        """Apply ``commands`` (each once, in order of arrival); one result per command.

        The commands are queued before this first yields, so a caller that checked it may
        still write (see :meth:`actors._shell.ShardActor.retire`) is not overtaken.
        """
        pending = [self._coalescer.enqueue(c) for c in commands]
        results: list[Result] = []
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if not isinstance(result, Outcome | Exception):
                raise result  # cancellation and the like end the call, not one command
            results.append(result)
        return results

    async def drained(self) -> None:
        """Return once every command queued so far is committed or failed."""
        await self._coalescer.drained()

    @abstractmethod
    def owns(self, key: K) -> bool:
        """Whether this shard owns ``key`` (only owned rows are read into memory)."""

    @abstractmethod
    def key_of(self, command: C) -> K:
        """The entity ``command`` changes."""

    @abstractmethod
    def entity_key(self, entity: E) -> K:
        """The key of ``entity``."""

    @abstractmethod
    async def load(self, uow: UnitOfWork, keys: Sequence[K]) -> list[E]:
        """The stored entities among ``keys``."""

    @abstractmethod
    def decide(self, command: C, draft: Draft) -> Outcome:
        """Apply ``command`` to ``draft`` (entities and rows), or refuse it.

        Raises:
            Refusal: a business rule refuses it (recorded as its outcome).
            Exception: the command cannot be decided here (not recorded), e.g. wrong shard.
        """

    @abstractmethod
    async def store(
        self, uow: UnitOfWork, created: list[E], updated: list[E], rows: list[Any]
    ) -> list[E]:
        """Insert ``created``, compare-and-set ``updated``, append ``rows``; the stored entities.

        Raises:
            StaleWriteError: an updated entity's stored version is not one less than given.
        """

    async def committed(self, entities: list[E]) -> None:
        """Called after each commit, before any caller is answered (cache invalidation)."""

    async def _run(self, batch: list[C]) -> list[Result]:
        results: list[Result | None] = [None] * len(batch)
        todo, seen = [], set()
        for i, command in enumerate(batch):
            if command.op.key in seen:
                results[i] = OperationInProgressError(command.op.key)
            else:
                seen.add(command.op.key)
                todo.append(i)
        reconnected = False
        for _ in range(self.attempts):
            if not todo:
                break
            try:
                done = await self._attempt(batch, todo, results)
            except StaleWriteError:
                self._forget(batch, todo)  # another writer moved them: read them again
                continue
            except Exception as exc:
                self._forget(batch, todo)
                if isinstance(exc, StorageUnavailableError) and not reconnected:
                    # A connection PostgreSQL dropped (a restart; the shards' pools skip the
                    # ping): the pool has let go of the others, so go once more on a fresh
                    # one. If the commit did go through, the operations log replays it.
                    reconnected = True
                    continue
                traces = sorted({batch[i].op.trace_id for i in todo})
                log.warning("batch_failed", trace_ids=traces, error=type(exc).__name__)
                for i in todo:
                    results[i] = exc
                todo = []
                break
            todo = [i for i in todo if results[i] is None] if not done else []
        for i in todo:
            results[i] = StaleWriteError("contended; retry")
        return [r if r is not None else StaleWriteError("unanswered") for r in results]

    async def _attempt(self, batch: list[C], todo: list[int], results: list[Result | None]) -> bool:
        """One transaction for the commands ``todo``; ``False`` when some must go again."""
        async with self._uow() as uow:
            wanted = {self.key_of(batch[i]) for i in todo}
            missing = [k for k in wanted - self.entities.keys() if self.owns(k)]
            if missing:
                for entity in await self.load(uow, missing):
                    self.entities[self.entity_key(entity)] = entity
            draft = Draft(base=self.entities)
            prior = await self._undone_outcomes(uow, [batch[i] for i in todo])
            outcomes = self._decide_all(batch, todo, results, draft, prior)
            if outcomes is None:
                return False  # decided without those: decide the rest again, cleanly
            records = _records(batch, outcomes, draft)
            recorded = await uow.operations.record(records, draft.events)
            if not draft.fenced <= recorded:
                return False  # recorded meanwhile by another writer: decide again
            repeated = [i for i in todo if batch[i].op.key not in recorded]
            if repeated:
                stored = await uow.operations.get_many([batch[i].op.key for i in repeated])
                for i in repeated:
                    if (found := stored.get(batch[i].op.key)) is not None:
                        results[i] = replay(batch[i].op, found)
                return False  # roll back; the others go again without the repeats
            created, updated = self._versioned(draft)
            stored_entities = await self.store(uow, created, updated, draft.rows)
            await uow.commit()
        WRITE_BATCH.labels(self.kind).observe(len(todo))
        for entity in stored_entities:
            self.entities[self.entity_key(entity)] = entity
        await self.committed(stored_entities)
        for i in todo:
            results[i] = outcomes[i]
        return True

    async def _undone_outcomes(self, uow: UnitOfWork, commands: list[C]) -> dict[str, Outcome]:
        """The stored outcomes of the operations ``commands`` undo, by key."""
        keys = [k for c in commands if (k := getattr(c, "undoes", None)) is not None]
        if not keys:
            return {}
        stored = await uow.operations.get_many(keys)
        return {key: Outcome.from_json(record.outcome) for key, record in stored.items()}

    def _decide_all(
        self,
        batch: list[C],
        todo: list[int],
        results: list[Result | None],
        draft: Draft,
        prior: dict[str, Outcome],
    ) -> dict[int, Outcome] | None:
        """Each command's outcome, or ``None`` when some could not be decided.

        The errors of those are put in ``results``; the draft then holds half-made changes.
        """
        outcomes: dict[int, Outcome] = {}
        failed = False
        for i in todo:
            try:
                outcomes[i] = self._decide_one(batch[i], draft, prior)
            except Exception as exc:
                results[i] = exc
                failed = True
            else:
                draft.decided[batch[i].op.key] = outcomes[i]
        return None if failed else outcomes

    def _decide_one(self, command: C, draft: Draft, prior: dict[str, Outcome]) -> Outcome:
        fenced = draft.decided.get(command.op.key)
        if fenced is not None:  # undone earlier in this very batch
            return dataclasses.replace(fenced, replayed=True)
        undoes: str | None = getattr(command, "undoes", None)
        if undoes is not None:
            earlier = draft.decided.get(undoes, prior.get(undoes))
            if earlier is None:
                draft.decided[undoes] = Outcome(refusal=FencedRefusal(undoes))
                draft.fenced.add(undoes)
            if earlier is None or earlier.refusal is not None:
                return Outcome(value={"undone": False})
        try:
            return self.decide(command, draft)
        except Refusal as refusal:
            draft.vouch(self.key_of(command))
            return Outcome(refusal=refusal)

    def _versioned(self, draft: Draft) -> tuple[list[E], list[E]]:
        created, updated = [], []
        for key, entity in draft.changed.items():
            if key in draft.created:
                created.append(dataclasses.replace(entity, version=1))
            else:
                base_version = draft.base[key].version
                updated.append(dataclasses.replace(entity, version=base_version + 1))
        return created, updated

    def _forget(self, batch: list[C], todo: list[int]) -> None:
        for i in todo:
            self.entities.pop(self.key_of(batch[i]), None)


def _records(
    batch: Sequence[Command], outcomes: dict[int, Outcome], draft: Draft
) -> list[OperationRecord]:
    """What a batch records: each command's outcome, and the keys it fenced."""
    records = {
        key: OperationRecord(key, FENCED, draft.decided[key].to_json()) for key in draft.fenced
    }
    for i, outcome in outcomes.items():
        op = batch[i].op
        records.setdefault(op.key, OperationRecord(op.key, op.fingerprint, outcome.to_json()))
    return list(records.values())


def replay(op: Operation, stored: OperationRecord) -> Result:
    """The stored outcome of a repeated operation, or a conflict if it asked otherwise."""
    if stored.fingerprint not in (op.fingerprint, FENCED):
        return IdempotencyConflictError(op.key)
    return Outcome.from_json(stored.outcome)
