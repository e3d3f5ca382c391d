"""Idempotent commands: what every mutating actor method takes and gives back.

Every write carries an :class:`Operation`: a key (the client's ``Idempotency-Key`` scoped to
the user, or a saga id and step) and a fingerprint of what was asked. The writer records the
:class:`Outcome` under the key in the same transaction as the effect, so the same key asked
again gets the first outcome back, even when the first reply was lost or the actor died just
after committing. Business refusals (out of stock, insufficient funds) are outcomes too: a
refusal is as final as a success.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from storage.records import EventRecord

_EVENT_IDS = uuid.UUID("0c4f3a52-8e7b-4d0e-9b1f-6a2d5c7e9f13")  # namespace of event ids
MAX_AMOUNT = 10**12  # money in one request, in minor units (API.md)
MAX_QUANTITY = 10**6  # units in one request (API.md)


def canonical_json(value: object) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal data, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Operation:
    """The identity of one write request.

    Attributes:
        key: the idempotency key; the same key is the same request.
        fingerprint: a digest of what was asked (another request under the key conflicts).
        trace_id: the trace of the request that sent it, for the shard's log lines.
    """

    key: str
    fingerprint: str
    trace_id: str = field(default="-", compare=False)

    @classmethod
    def of(cls, key: str, request: object, trace_id: str = "-") -> Operation:
        """An operation keyed ``key`` whose fingerprint is the digest of ``request``."""
        digest = hashlib.sha256(canonical_json(request).encode()).hexdigest()
        return cls(key, digest, trace_id)

    @classmethod
    def once(cls, request: object, trace_id: str = "-") -> Operation:
        """An operation nobody can repeat (the client sent no idempotency key)."""
        return cls.of(f"once:{uuid.uuid4().hex}", request, trace_id)


class FieldError(Exception):
    """A request field breaks a rule; ``field`` names it for the client (a 422 problem)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class Refusal(Exception):
    """A business rule said no. It is an outcome: recorded, and replayed for the same key.

    Subclasses set ``code`` and keep their constructor's arguments in ``detail`` so that a
    stored refusal can be raised again exactly.
    """

    code: ClassVar[str] = "refused"
    retryable: ClassVar[bool] = False
    _by_code: ClassVar[dict[str, type[Refusal]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            Refusal._by_code[cls.code] = cls

    def __init__(self, **detail: Any) -> None:
        super().__init__(*detail.values())
        self.detail: dict[str, Any] = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_refusal, (self.code, self.detail))

    def __str__(self) -> str:
        return f"{self.code}: {canonical_json(self.detail)}"

    @staticmethod
    def rebuild(code: str, detail: Mapping[str, Any]) -> Refusal:
        """The refusal of ``code`` with ``detail``, as first raised."""
        return Refusal._by_code[code](**detail)


Refusal._by_code[Refusal.code] = Refusal


def _rebuild_refusal(code: str, detail: dict[str, Any]) -> Refusal:
    return Refusal.rebuild(code, detail)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: a value, or a refusal; ``replayed`` when it was done before.

    Attributes:
        value: the result's fields when the command was applied.
        refusal: the business rule that refused it, if one did.
        replayed: this is a stored outcome given again for a repeated key.
    """

    value: Mapping[str, Any] | None = None
    refusal: Refusal | None = None
    replayed: bool = False

    def unwrap(self) -> Mapping[str, Any]:
        """The value.

        Raises:
            Refusal: the command was refused.
        """
        if self.refusal is not None:
            raise self.refusal
        assert self.value is not None
        return self.value

    def to_json(self) -> str:
        """The outcome as stored."""
        if self.refusal is not None:
            return canonical_json({"refused": self.refusal.code, "detail": self.refusal.detail})
        return canonical_json({"value": self.value})

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        """A stored outcome, marked as replayed."""
        data = json.loads(text)
        if "refused" in data:
            return cls(refusal=Refusal.rebuild(data["refused"], data["detail"]), replayed=True)
        return cls(value=data["value"], replayed=True)


FENCED = "fenced"  # the fingerprint of a key undone before it was applied: matches any


class FencedRefusal(Refusal):
    """The operation was undone (compensated) before it arrived: it will never apply."""

    code = "fenced"

    def __init__(self, key: str) -> None:
        super().__init__(key=key)


class IdempotencyConflictError(Exception):
    """The idempotency key was used before for a different request."""

    retryable = False

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class OperationInProgressError(Exception):
    """A request with this idempotency key is being applied right now; retry shortly."""

    retryable = True

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class WrongShardError(Exception):
    """The call reached a shard that does not own the key, or one handing its keys over.

    Retryable: the caller routes it again (after a handoff the new owner answers).

    Attributes:
        key: the key the call was about.
        shard: the shard that answered.
        shards: the number of shards in the answering shard's layout; a caller routing
            with another number learns the new layout from it.
    """

    retryable = True

    def __init__(self, key: str, shard: int, shards: int) -> None:
        super().__init__(key, shard, shards)
        self.key = key
        self.shard = shard
        self.shards = shards


@dataclass(slots=True)
class Draft:
    """Entities changed by a batch before it commits; dropped when the batch fails.

    Attributes:
        base: entities as committed, by key (``None``: does not exist).
        now: the batch's time, stamped on what it changes.
        changed: new versions of entities, by key.
        created: keys of entities the batch creates.
        rows: further rows the batch appends (ledger entries).
        decided: outcomes decided so far in the batch, by operation key.
        fenced: keys of operations the batch undid before they arrived (see
            :class:`FencedRefusal`).
        events: what the batch's changes publish, written in its transaction (the outbox).
    """

    base: dict[Any, Any]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    changed: dict[Any, Any] = field(default_factory=dict)
    created: set[Any] = field(default_factory=set)
    rows: list[Any] = field(default_factory=list)
    decided: dict[str, Outcome] = field(default_factory=dict)
    fenced: set[str] = field(default_factory=set)
    events: list[EventRecord] = field(default_factory=list)

    def get(self, key: Any) -> Any:
        """The entity as the batch sees it so far, or ``None``."""
        return self.changed.get(key, self.base.get(key))

    def vouch(self, key: Any) -> None:
        """A decision read this entity without changing it: store it unchanged anyway.

        Its version compare-and-set then proves the decision (a refusal, say) was made on
        the stored row, not on a stale copy.
        """
        entity = self.get(key)
        if entity is not None and key not in self.changed:
            self.changed[key] = entity

    def emit(self, op: Operation, kind: str, aggregate_id: str, payload: Mapping[str, Any]) -> None:
        """Publish event ``kind`` about ``aggregate_id`` with the batch.

        Its id derives from the operation, so the same operation never makes two events.
        """
        event_id = uuid.uuid5(_EVENT_IDS, f"{op.key}:{kind}")
        body = canonical_json(payload)
        self.events.append(EventRecord(event_id, kind, aggregate_id, op.trace_id, body, self.now))

    def put(self, key: Any, entity: Any) -> None:
        """Change (or, when it did not exist, create) an entity."""
        if self.base.get(key) is None:
            self.created.add(key)
        self.changed[key] = entity
