"""What each consumer group makes of events: pure rules over the event contract.

Order events carry the whole order view; product and wallet events (written by the shards)
carry what moved and the state after it.
A payload that breaks the contract raises :class:`MalformedEventError`, so the event fails
every delivery and ends as a dead letter instead of being half applied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from actors.events.errors import MalformedEventError
from storage.records import STATUS_RANK, EventRecord, OrderViewRecord

ORDER_EVENTS = frozenset(
    {"OrderPlaced", "OrderConfirmed", "OrderFailed", "OrderCancelling", "OrderCancelled"}
)
# Written by the inventory shards, one per product and operation (aggregate: the SKU).
STOCK_EVENTS = frozenset(
    {
        "ProductCreated",
        "ProductUpdated",
        "StockRestocked",
        "StockReserved",
        "StockReleased",
        "StockCommitted",
    }
)
# Written by the wallet shards, one per movement (aggregate: the wallet's user id).
WALLET_EVENTS = frozenset({"WalletCredited", "WalletDebited", "WalletRefunded"})
KNOWN_EVENTS = ORDER_EVENTS | STOCK_EVENTS | WALLET_EVENTS
_HEX32 = re.compile(r"[0-9a-f]{32}")


def payload_of(event: EventRecord) -> dict[str, Any]:
    """The event's JSON payload as an object."""
    try:
        payload = json.loads(event.payload)
    except ValueError:
        raise MalformedEventError(f"{event.type} {event.id}: payload is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedEventError(f"{event.type} {event.id}: payload is not an object")
    return payload


def order_view(event: EventRecord) -> OrderViewRecord:
    """The order view an order event carries."""
    p = payload_of(event)
    try:
        return OrderViewRecord(
            id=UUID(p["order_id"]),
            user_id=UUID(p["user_id"]),
            status=_status(p["status"]),
            total=int(p["total"]),
            currency=str(p["currency"]),
            created_at=datetime.fromisoformat(p["created_at"]),
            updated_at=datetime.fromisoformat(p["updated_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEventError(f"{event.type} {event.id}: {exc!r}") from None


def _status(value: object) -> str:
    if value not in STATUS_RANK:
        raise ValueError(f"unknown status {value!r}")
    return str(value)


def newest_views(events: Iterable[EventRecord]) -> list[OrderViewRecord]:
    """One view per order: the one with the newest status (then the latest change)."""
    best: dict[UUID, OrderViewRecord] = {}
    for event in events:
        if event.type not in ORDER_EVENTS:
            continue
        view = order_view(event)
        held = best.get(view.id)
        if held is None or _newness(view) > _newness(held):
            best[view.id] = view
    return list(best.values())


def _newness(view: OrderViewRecord) -> tuple[int, datetime]:
    return STATUS_RANK[view.status], view.updated_at


def sales_deltas(events: Iterable[EventRecord]) -> dict[str, tuple[int, int]]:
    """Units and revenue per SKU: added by ``OrderConfirmed``, taken back by ``OrderCancelled``."""
    deltas: dict[str, tuple[int, int]] = {}
    for event in events:
        sign = {"OrderConfirmed": 1, "OrderCancelled": -1}.get(event.type)
        if sign is None:
            continue
        for sku, quantity, price in _lines(event, priced=True):
            units, revenue = deltas.get(sku, (0, 0))
            deltas[sku] = (units + sign * quantity, revenue + sign * quantity * price)
    return deltas


def _lines(event: EventRecord, priced: bool) -> list[tuple[str, int, int]]:
    try:
        return [
            (str(i["sku"]), int(i["quantity"]), int(i["price"]) if priced else 0)
            for i in payload_of(event)["items"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEventError(f"{event.type} {event.id}: {exc!r}") from None


def skus_moved(events: Iterable[EventRecord]) -> list[str]:
    """The SKUs whose product or stock the events changed (their cached entries are stale)."""
    skus = set()
    for event in events:
        if event.type in STOCK_EVENTS:
            sku = payload_of(event).get("sku")
            if not isinstance(sku, str):
                raise MalformedEventError(f"{event.type} {event.id}: no sku")
            skus.add(sku)
    return sorted(skus)


@dataclass(frozen=True, slots=True)
class Notification:
    """What the provider is told about a confirmed order.

    Attributes:
        event_id: the event's id; the provider deduplicates on it (``Idempotency-Key``).
        trace_id: the trace of the request that placed the order.
        order_id: the order.
        user_id: its customer.
        total: its total, in minor units of ``currency``.
        currency: the deployment's currency.
    """

    event_id: UUID
    trace_id: str
    order_id: UUID
    user_id: UUID
    total: int
    currency: str

    def body(self) -> dict[str, object]:
        """The JSON body sent to the provider."""
        return {
            "order_id": str(self.order_id),
            "user_id": str(self.user_id),
            "total": self.total,
            "currency": self.currency,
        }


def notifications(events: Sequence[EventRecord]) -> list[Notification]:
    """One notification per ``OrderConfirmed`` event."""
    found = []
    for event in events:
        if event.type == "OrderConfirmed":
            view = order_view(event)
            found.append(
                Notification(
                    event.id, event.trace_id, view.id, view.user_id, view.total, view.currency
                )
            )
    return found


def traceparent(trace_id: str, span_seed: str) -> str:
    """A W3C ``traceparent`` carrying ``trace_id`` (hashed to 32 hex when it is not)."""
    trace = trace_id if _HEX32.fullmatch(trace_id) else _hex(trace_id, 32)
    return f"00-{trace}-{_hex(span_seed, 16)}-01"


def _hex(seed: str, width: int) -> str:
    return hashlib.blake2b(seed.encode(), digest_size=width // 2).hexdigest()


def gives_up(deliveries: int, max_deliveries: int, retryable_elsewhere: bool) -> bool:
    """Whether a failed delivery makes the event a dead letter.

    Failures caused by the worker's own state (an open breaker) never do: they say nothing
    about the event, and the worker stops consuming until the cause is gone.
    """
    return not retryable_elsewhere and deliveries >= max_deliveries


def type_label(event_type: str) -> str:
    """A bounded metric label for an event type."""
    return event_type if event_type in KNOWN_EVENTS else "other"
