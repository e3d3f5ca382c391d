"""The saga engine: runs saga instances step by step, durably, over a journal port.

Every transition (a step succeeded, failed, was compensated; the saga completed, failed,
got stuck) is written to the journal, with the effects the definition asks for, before
the next action runs. A saga that was running when its process died is loaded from the
journal's store and run again from its last transition: actions and compensations are
idempotent, so the step that was in flight runs again without a second effect.

Retries use tenacity (exponential backoff, full jitter); business refusals
(:class:`sagas.errors.StepFailedError`) are never retried. A step that can be undone fails
the saga (reason ``timeout``) when its tries run out or the saga's deadline passes; a step
that cannot be undone, and any compensation, is retried until its tries run out, and then
the saga is STUCK until an operator retries or aborts it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from sagas.definition import (
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    FAILED,
    RUNNING,
    STARTED,
    STUCK,
    SUCCEEDED,
    Effects,
    RetryPolicy,
    SagaDefinition,
    SagaState,
    Step,
)
from sagas.errors import SagaStateError, StepFailedError
from storage.records import EventRecord, SagaLogRecord, SagaRecord

log = structlog.get_logger(__name__)
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One transition of one saga, written in one transaction with its effects.

    Attributes:
        saga: the saga's state after the transition.
        log: the step transitions it records (oldest first).
        order: the order's new state, if the transition changes it.
        events: events to publish with it (through the outbox).
    """

    saga: SagaRecord
    log: tuple[SagaLogRecord, ...]
    order: Any = None
    events: tuple[EventRecord, ...] = ()


class SagaJournal(Protocol):
    """Where transitions are made durable."""

    async def write(self, checkpoint: Checkpoint) -> None:
        """Commit ``checkpoint`` (possibly with other sagas' checkpoints).

        Raises:
            Exception: it is not known to be committed; writing it again is harmless.
        """
        ...


class SagaObserver(Protocol):
    """Told about transitions (metrics); must not fail."""

    def transition(self, saga: SagaState, transition: str, step: str | None) -> None:
        """``saga`` made ``transition`` (of ``step``)."""
        ...


class _Quiet:
    def transition(self, saga: SagaState, transition: str, step: str | None) -> None:
        return None


@dataclass(slots=True)
class _Run:
    saga: SagaState
    task: asyncio.Task[None] | None = None
    log: list[SagaLogRecord] = field(default_factory=list)  # failed tries, written next


class SagaEngine:
    """Runs sagas of the given definitions; each instance is one asyncio task.

    Args:
        definitions: the kinds of saga, by name.
        journal: where transitions are written.
        clock: the time (tests pass a fake one).
        observer: told about every transition.
    """

    def __init__(
        self,
        definitions: Mapping[str, SagaDefinition],
        journal: SagaJournal,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        observer: SagaObserver | None = None,
    ) -> None:
        self._definitions = definitions
        self._journal = journal
        self._clock = clock
        self._observer = observer or _Quiet()
        self._runs: dict[UUID, _Run] = {}
        self._finished: dict[UUID, asyncio.Event] = {}

    def held(self) -> list[SagaState]:
        """The sagas this engine holds (running, or STUCK and waiting for an operator)."""
        return [r.saga for r in self._runs.values()]

    def get(self, saga_id: UUID) -> SagaState | None:
        """A saga this engine holds."""
        run = self._runs.get(saga_id)
        return run.saga if run is not None else None

    def start(self, saga: SagaState) -> None:
        """Run ``saga`` from its last transition (a STUCK one is only held)."""
        run = self._runs.setdefault(saga.id, _Run(saga))
        if saga.status in (RUNNING, COMPENSATING) and (run.task is None or run.task.done()):
            run.task = asyncio.create_task(self._run(run), name=f"saga-{saga.id}")

    async def wait(self, saga_ids: Iterable[UUID], timeout_s: float) -> None:
        """Return when none of ``saga_ids`` is running here any more, or after ``timeout_s``."""
        tasks = [t for i in saga_ids if (r := self._runs.get(i)) and (t := r.task)]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def stop(self) -> None:
        """Stop every saga task (each resumes from its last transition when loaded again)."""
        tasks = [r.task for r in self._runs.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runs.clear()

    async def retry(self, saga_id: UUID) -> SagaState:
        """Resume a STUCK saga where it stopped.

        Raises:
            SagaStateError: it is not STUCK (or not held here).
        """
        run = self._stuck(saga_id, "retry")
        saga = run.saga
        saga.status, saga.error = saga.data.pop("stuck_in"), None
        await self._checkpoint(run, "retried", None)
        self.start(saga)
        return saga

    async def abort(self, saga_id: UUID, reason: str = "aborted") -> SagaState:
        """Give up a running or STUCK saga: undo what it did, and fail it with ``reason``.

        A saga that is already compensating just carries on (as :meth:`retry`).

        Raises:
            SagaStateError: it has finished, or it did something that cannot be undone.
        """
        run = self._runs.get(saga_id)
        if run is None:
            raise SagaStateError(str(saga_id), "unknown", "not held by this orchestrator")
        saga = run.saga
        if saga.status == STUCK and saga.data.get("stuck_in") == COMPENSATING:
            return await self.retry(saga_id)
        if saga.status not in (RUNNING, STUCK) or not self._definition(saga).can_compensate(saga):
            raise SagaStateError(str(saga_id), saga.status, "cannot be undone from here")
        if run.task is not None:
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        index = saga.next_step()
        if index is not None and saga.steps[index].status == RUNNING:
            saga.steps[index].status = FAILED
        saga.data.pop("stuck_in", None)
        saga.status, saga.failure_reason, saga.error = COMPENSATING, reason, None
        await self._checkpoint(run, "aborted", None)
        self.start(saga)
        return saga

    def opening(self, saga: SagaState) -> Checkpoint:
        """The checkpoint that creates ``saga`` (the caller writes it, then :meth:`start`s it).

        Its first step is marked RUNNING, so the log says it started before it runs.
        """
        saga.steps[0].status = RUNNING
        return self._compose(saga, [("created", None)])

    def _stuck(self, saga_id: UUID, what: str) -> _Run:
        run = self._runs.get(saga_id)
        if run is None or run.saga.status != STUCK:
            status = run.saga.status if run is not None else "unknown"
            raise SagaStateError(str(saga_id), status, f"only a STUCK saga can {what}")
        return run

    def definition(self, kind: str) -> SagaDefinition:
        """The definition of the sagas of ``kind``."""
        return self._definitions[kind]

    def _definition(self, saga: SagaState) -> SagaDefinition:
        return self._definitions[saga.kind]

    async def _run(self, run: _Run) -> None:
        saga = run.saga
        try:
            while saga.status in (RUNNING, COMPENSATING):
                if saga.status == RUNNING:
                    await self._forward(run)
                else:
                    await self._backward(run)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not a step failure: keep the saga for an operator
            log.exception("saga_crashed", saga_id=str(saga.id), trace_id=saga.trace_id)
            raise
        if saga.status != STUCK:
            self._runs.pop(saga.id, None)

    async def _forward(self, run: _Run) -> None:
        saga, definition = run.saga, self._definition(run.saga)
        index = saga.next_step()
        if index is None:
            saga.status = COMPLETED
            await self._checkpoint(run, "completed", None)
            return
        step, state = definition.steps[index], saga.steps[index]
        state.status = RUNNING
        deadline = step.compensation is not None
        try:
            result = await self._tries(run, step, step.action, step.retry, deadline)
        except StepFailedError as failure:
            await self._fail(run, index, failure.reason, failure)
            return
        except Exception as exc:
            if definition.can_compensate(saga):
                await self._fail(run, index, "timeout", exc)
            else:
                await self._stick(run, step.name, exc)
            return
        saga.data.update(result or {})
        state.status = SUCCEEDED
        following = saga.next_step()
        if following is None:  # the last step: its success and the saga's end, in one write
            saga.status = COMPLETED
            await self._checkpoint(run, "succeeded", step.name, then="completed")
            return
        saga.steps[following].status = RUNNING
        await self._checkpoint(run, "succeeded", step.name)

    async def _backward(self, run: _Run) -> None:
        saga, definition = run.saga, self._definition(run.saga)
        for index in reversed(range(len(saga.steps))):
            step, state = definition.steps[index], saga.steps[index]
            if state.status not in STARTED:
                continue
            if step.compensation is not None:
                try:
                    policy = definition.compensation_retry
                    await self._tries(run, step, step.compensation, policy, deadline=False)
                except Exception as exc:
                    await self._stick(run, step.name, exc)
                    return
            state.status = COMPENSATED
            await self._checkpoint(run, "compensated", step.name)
        saga.status = FAILED
        await self._checkpoint(run, "failed", None)

    async def _tries(
        self,
        run: _Run,
        step: Step,
        action: Callable[[SagaState], Any],
        policy: RetryPolicy,
        deadline: bool,
    ) -> Mapping[str, Any] | None:
        saga = run.saga
        state = next(s for s in saga.steps if s.name == step.name)
        stops: list[stop_base] = [stop_after_attempt(policy.max_attempts)]
        if deadline:
            stops.append(_PastDeadline(self._clock, saga.deadline))
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_worth_another_try),
            stop=stop_any(*stops),
            wait=wait_random_exponential(multiplier=policy.base_s, max=policy.max_s),
            before_sleep=lambda rs: self._failed_try(run, step, rs),
            reraise=True,
        ):
            with attempt:
                state.attempts += 1
                result: Mapping[str, Any] | None = await asyncio.wait_for(
                    action(saga), step.timeout_s
                )
                return result
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _failed_try(self, run: _Run, step: Step, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        run.log.append(self._entry(run.saga, step.name, "try_failed", _describe(exc)))
        log.info(
            "saga_step_retry",
            saga_id=str(run.saga.id),
            step=step.name,
            error=type(exc).__name__,
            trace_id=run.saga.trace_id,
        )

    async def _fail(self, run: _Run, index: int, reason: str, exc: BaseException) -> None:
        saga = run.saga
        saga.steps[index].status = FAILED
        saga.status, saga.failure_reason, saga.error = COMPENSATING, reason, _describe(exc)
        await self._checkpoint(run, "step_failed", saga.steps[index].name)

    async def _stick(self, run: _Run, step: str, exc: BaseException) -> None:
        saga = run.saga
        saga.data["stuck_in"] = saga.status
        saga.status, saga.error = STUCK, _describe(exc)
        log.error("saga_stuck", saga_id=str(saga.id), step=step, trace_id=saga.trace_id)
        await self._checkpoint(run, "stuck", step)

    async def _checkpoint(
        self, run: _Run, transition: str, step: str | None, *, then: str | None = None
    ) -> None:
        """Write the transition (retrying until it is committed), then tell the observer.

        ``then`` is a saga transition (``completed``) written in the same checkpoint.
        """
        saga = run.saga
        saga.updated_at = self._clock()
        moves = [(transition, step)] + ([(then, None)] if then else [])
        checkpoint = self._compose(saga, moves, run.log)
        async for attempt in AsyncRetrying(
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            before_sleep=lambda rs: log.warning(
                "saga_checkpoint_retry", saga_id=str(saga.id), trace_id=saga.trace_id
            ),
        ):
            with attempt:
                await self._journal.write(checkpoint)
        run.log.clear()
        for name, of in moves:
            self._observer.transition(saga, name, of)

    def _compose(
        self,
        saga: SagaState,
        moves: list[tuple[str, str | None]],
        earlier: Iterable[SagaLogRecord] = (),
    ) -> Checkpoint:
        """The checkpoint of ``moves`` (transition, step): log entries, order and events."""
        entries, order = list(earlier), None
        events: list[EventRecord] = []
        for name, of in moves:
            effects = self._definition(saga).effects(saga, name, of)
            entries += self._entries(saga, name, of)
            order = effects.order if effects.order is not None else order
            events += self._events(saga, name, of, effects)
        return Checkpoint(saga.to_record(), tuple(entries), order, tuple(events))

    def _entries(self, saga: SagaState, transition: str, step: str | None) -> list[SagaLogRecord]:
        entries = [self._entry(saga, step or "-", transition, saga.error)]
        if transition in ("created", "succeeded", "retried", "aborted"):
            index = saga.next_step() if saga.status == RUNNING else None
            if index is not None:
                entries.append(self._entry(saga, saga.steps[index].name, "started", None))
        return entries

    def _entry(
        self, saga: SagaState, step: str, transition: str, detail: str | None
    ) -> SagaLogRecord:
        attempts = next((s.attempts for s in saga.steps if s.name == step), 0)
        return SagaLogRecord(
            saga.id, step, transition, attempts, detail, saga.trace_id, self._clock()
        )

    def _events(
        self, saga: SagaState, transition: str, step: str | None, effects: Effects
    ) -> tuple[EventRecord, ...]:
        return tuple(
            EventRecord(
                id=event_id(saga.id, f"{transition}:{step}:{kind}"),
                type=kind,
                aggregate_id=str(saga.order_id),
                trace_id=saga.trace_id,
                payload=json.dumps(dict(payload), sort_keys=True),
                created_at=saga.updated_at,
            )
            for kind, payload in effects.events
        )


class _PastDeadline(stop_base):
    """Stops retrying once ``deadline`` has passed."""

    def __init__(self, clock: Clock, deadline: datetime) -> None:
        self._clock, self._deadline = clock, deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._clock() >= self._deadline


def _worth_another_try(exc: BaseException) -> bool:
    """Failures are tried again; business refusals and cancellation (shutdown) are not."""
    return isinstance(exc, Exception) and not isinstance(exc, StepFailedError)


def event_id(saga_id: UUID, name: str) -> UUID:
    """The id of a saga's event: the same transition written twice is the same event."""
    return uuid.uuid5(saga_id, name)


def _describe(exc: BaseException | None) -> str | None:
    """An error as operators see it: its type and message, never a traceback."""
    if exc is None:
        return None
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__
