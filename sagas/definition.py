"""A saga is data: ordered steps, each an action and its compensation, plus a retry policy.

The engine (:mod:`sagas.engine`) runs a :class:`SagaDefinition` over a :class:`SagaState`;
neither knows what an order is. What a saga changes besides itself (an order's status, the
events it publishes) comes from its definition's ``effects`` at each transition.

Step statuses go PENDING → RUNNING → SUCCEEDED or FAILED, and COMPENSATED once undone.
A saga goes RUNNING → COMPLETED, or RUNNING → COMPENSATING → FAILED; it is STUCK when a
step without compensation, or a compensation, keeps failing, until an operator acts.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from storage.records import SagaRecord

RUNNING, COMPENSATING, COMPLETED, FAILED, STUCK = (
    "RUNNING",
    "COMPENSATING",
    "COMPLETED",
    "FAILED",
    "STUCK",
)
SAGA_STATUSES = (RUNNING, COMPENSATING, COMPLETED, FAILED, STUCK)
PENDING, SUCCEEDED, COMPENSATED = "PENDING", "SUCCEEDED", "COMPENSATED"
STARTED = (RUNNING, SUCCEEDED, FAILED)  # step statuses whose action may have had an effect


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, a step's action is tried.

    Attributes:
        max_attempts: tries before giving up (a compensation then makes the saga STUCK).
        base_s: the first backoff; each next one doubles, with full jitter.
        max_s: the longest backoff.
    """

    max_attempts: int = 6
    base_s: float = 0.05
    max_s: float = 1.0


@dataclass(slots=True)
class StepState:
    """Where one step of one saga is."""

    name: str
    status: str = PENDING
    attempts: int = 0


@dataclass(slots=True)
class SagaState:
    """One saga instance as the engine holds it in memory (and stores at each transition).

    Attributes:
        data: the saga's input and what its steps returned; JSON values only. The engine
            keeps ``stuck_in`` here (the status a STUCK saga was in).
    """

    id: UUID
    kind: str
    order_id: UUID
    partition: int
    status: str
    steps: list[StepState]
    data: dict[str, Any]
    trace_id: str
    deadline: datetime
    created_at: datetime
    updated_at: datetime
    failure_reason: str | None = None
    error: str | None = None

    def next_step(self) -> int | None:
        """The index of the first step not yet SUCCEEDED, or ``None`` when all are."""
        return next((i for i, s in enumerate(self.steps) if s.status != SUCCEEDED), None)

    def to_record(self) -> SagaRecord:
        """The saga as stored."""
        steps = [{"name": s.name, "status": s.status, "attempts": s.attempts} for s in self.steps]
        return SagaRecord(
            id=self.id,
            kind=self.kind,
            order_id=self.order_id,
            partition=self.partition,
            status=self.status,
            steps=json.dumps(steps),
            data=json.dumps(self.data, sort_keys=True),
            failure_reason=self.failure_reason,
            error=self.error,
            trace_id=self.trace_id,
            deadline=self.deadline,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    @classmethod
    def from_record(cls, record: SagaRecord) -> SagaState:
        """A stored saga, to run again."""
        return cls(
            id=record.id,
            kind=record.kind,
            order_id=record.order_id,
            partition=record.partition,
            status=record.status,
            steps=[StepState(**s) for s in json.loads(record.steps)],
            data=json.loads(record.data),
            trace_id=record.trace_id,
            deadline=record.deadline,
            created_at=record.created_at,
            updated_at=record.updated_at,
            failure_reason=record.failure_reason,
            error=record.error,
        )


Action = Callable[[SagaState], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step: an action, and the compensation that undoes it (``None``: cannot be undone).

    Both are idempotent (keyed by saga id and step), so running one again after a crash has
    no second effect; a compensation also works when its action never arrived.

    Attributes:
        name: a stored identifier (renaming one is a migration).
        action: does the step; returns values to merge into the saga's ``data``.
        compensation: undoes it.
        retry: how often the action (or compensation) is tried.
        timeout_s: the longest one try may take.
    """

    name: str
    action: Action
    compensation: Action | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Effects:
    """What a transition changes besides the saga: an order and events.

    Attributes:
        order: the order's new state, as the definition's ``effects`` builds it.
        events: ``(type, payload)`` of each event to publish with the transition.
    """

    order: Any = None
    events: tuple[tuple[str, Mapping[str, Any]], ...] = ()


NO_EFFECTS = Effects()


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A kind of saga.

    Attributes:
        kind: its stored name (``place_order``).
        steps: its steps, in order.
        effects: what each transition changes besides the saga; called with the saga,
            the transition (``succeeded``, ``completed``, ``failed``, ...), and the step.
        compensation_retry: tries of a compensation before the saga is STUCK.
    """

    kind: str
    steps: tuple[Step, ...]
    effects: Callable[[SagaState, str, str | None], Effects] = lambda s, t, n: NO_EFFECTS
    compensation_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=12, base_s=0.1, max_s=2.0)
    )

    def can_compensate(self, saga: SagaState) -> bool:
        """Whether every step that may have had an effect can be undone."""
        return all(
            step.compensation is not None
            for step, state in zip(self.steps, saga.steps, strict=True)
            if state.status in STARTED
        )
