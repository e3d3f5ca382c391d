"""The event side's pure rules, fakes and routes: no Redis, no PostgreSQL, no Ray."""

from __future__ import annotations

import json
import pickle
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.routing import APIRoute

from actors.events import errors
from actors.events.model import (
    gives_up,
    newest_views,
    notifications,
    sales_deltas,
    skus_moved,
    traceparent,
    type_label,
)
from serve._auth import declared_permission
from storage.records import DeadLetterRecord, EventRecord, OrderViewRecord
from storage.streams import decode_event, encode_event, partition_of
from tests.fakes import FakeUnitOfWorkFactory
from tests.unit.app_factory import offline_app

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ORDER = uuid.UUID(int=7)


def event(kind: str, status: str, minute: int = 0, items: object = None) -> EventRecord:
    payload = {
        "order_id": str(ORDER),
        "user_id": str(uuid.UUID(int=1)),
        "status": status,
        "items": items if items is not None else [{"sku": "A", "quantity": 2, "price": 5}],
        "total": 10,
        "currency": "USD",
        "created_at": T0.isoformat(),
        "updated_at": (T0 + timedelta(minutes=minute)).isoformat(),
    }
    return EventRecord(uuid.uuid4(), kind, str(ORDER), "f" * 32, json.dumps(payload), T0)


def test_an_aggregate_always_hashes_to_the_same_partition_in_range() -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)]
    assert [partition_of(i, 8) for i in ids] == [partition_of(i, 8) for i in ids]
    assert {partition_of(i, 8) for i in ids} == set(range(8))
    assert partition_of("order-1", 1) == 0


def test_the_newest_status_wins_whatever_the_order_of_events() -> None:
    events = [
        event("OrderCancelled", "CANCELLED", 3),
        event("OrderPlaced", "PENDING", 0),
        event("OrderConfirmed", "CONFIRMED", 1),
        event("StockReserved", "PENDING", 9),
    ]
    (view,) = newest_views(events)
    assert view.status == "CANCELLED"
    assert view.updated_at == T0 + timedelta(minutes=3)


def test_sales_are_added_on_confirmation_and_taken_back_on_cancellation() -> None:
    items = [{"sku": "A", "quantity": 2, "price": 5}, {"sku": "B", "quantity": 1, "price": 7}]
    confirmed = event("OrderConfirmed", "CONFIRMED", items=items)
    assert sales_deltas([confirmed]) == {"A": (2, 10), "B": (1, 7)}
    cancelled = event("OrderCancelled", "CANCELLED", items=items)
    assert sales_deltas([confirmed, cancelled]) == {"A": (0, 0), "B": (0, 0)}
    assert sales_deltas([event("OrderPlaced", "PENDING")]) == {}


def test_stock_events_name_the_skus_to_invalidate() -> None:
    moved = replace(
        event("StockReserved", "PENDING"),
        payload=json.dumps({"sku": "B", "quantity": 1, "available": 3, "reserved": 1}),
    )
    renamed = replace(moved, id=uuid.uuid4(), type="ProductUpdated", payload='{"sku": "A"}')
    assert skus_moved([moved, renamed, event("OrderConfirmed", "CONFIRMED")]) == ["A", "B"]
    with pytest.raises(errors.MalformedEventError):
        skus_moved([replace(moved, payload='{"sku": 3}')])


@pytest.mark.parametrize(
    "payload", ["not json", "[]", json.dumps({"order_id": "nope"}), json.dumps({"items": 3})]
)
def test_a_payload_that_breaks_the_contract_is_malformed(payload: str) -> None:
    bad = replace(event("OrderConfirmed", "CONFIRMED"), payload=payload)
    with pytest.raises(errors.MalformedEventError):
        newest_views([bad])
    with pytest.raises(errors.MalformedEventError):
        sales_deltas([bad])


def test_only_confirmed_orders_are_notified_with_the_event_as_idempotency_key() -> None:
    confirmed = event("OrderConfirmed", "CONFIRMED")
    (note,) = notifications([event("OrderPlaced", "PENDING"), confirmed])
    assert note.event_id == confirmed.id
    assert note.body() == {
        "order_id": str(ORDER), "user_id": str(uuid.UUID(int=1)), "total": 10, "currency": "USD"
    }  # fmt: skip


def test_traceparent_keeps_a_hex_trace_id_and_hashes_any_other() -> None:
    assert traceparent("a" * 32, "span").startswith("00-" + "a" * 32 + "-")
    other = traceparent("req-1", "span")
    version, trace, span, flags = other.split("-")
    assert (version, flags, len(trace), len(span)) == ("00", "01", 32, 16)
    assert traceparent("req-1", "span") == other


def test_dead_letter_after_max_deliveries_but_never_for_an_open_breaker() -> None:
    assert not gives_up(2, 3, retryable_elsewhere=False)
    assert gives_up(3, 3, retryable_elsewhere=False)
    assert not gives_up(9, 3, retryable_elsewhere=True)


def test_metric_labels_of_event_types_are_bounded() -> None:
    assert type_label("OrderConfirmed") == "OrderConfirmed"
    assert type_label("Anything" + uuid.uuid4().hex) == "other"


def test_events_survive_the_stream_envelope() -> None:
    original = replace(event("OrderPlaced", "PENDING"), seq=12)
    fields = {k.encode(): v.encode() for k, v in encode_event(original).items()}
    assert decode_event(fields) == original
    assert decode_event({b"id": b"x"}) is None


@pytest.mark.parametrize(
    "error",
    [
        errors.EventsError("x"),
        errors.MalformedEventError("bad"),
        errors.ProviderError("500"),
        errors.ProviderRejectedError("400"),
        errors.UnknownDeadLetterError("abc"),
    ],
)
def test_event_errors_survive_pickling(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.args == error.args
    assert vars(copy) == vars(error)


async def test_fake_dead_letters_replay_once_and_requeue_the_event() -> None:
    factory = FakeUnitOfWorkFactory()
    letter = DeadLetterRecord(uuid.uuid4(), "projector", event("X", "PENDING"), "e", 3, T0, None)
    factory.dead_letters[letter.id] = letter
    async with factory() as uow:
        first = await uow.dead_letters.replay(letter.id, T0)
        second = await uow.dead_letters.replay(letter.id, T0 + timedelta(hours=1))
        assert await uow.dead_letters.replay(uuid.uuid4(), T0) is None
        await uow.commit()
    assert first is not None and second == first and first.replayed_at == T0
    assert factory.outbox[letter.event.id] == letter.event


async def test_fake_order_views_page_newest_first() -> None:
    factory, user = FakeUnitOfWorkFactory(), uuid.uuid4()
    views = [
        OrderViewRecord(uuid.uuid4(), user, "PENDING", 1, "USD", T0 + timedelta(minutes=m), T0)
        for m in range(5)
    ]
    factory.order_views.update({v.id: v for v in views})
    async with factory() as uow:
        first = await uow.order_views.of_user(user, None, 3)
        rest = await uow.order_views.of_user(user, (first[-1].created_at, first[-1].id), 3)
    assert [*first, *rest] == sorted(views, key=lambda v: v.created_at, reverse=True)


def test_dead_letter_routes_need_events_manage() -> None:
    routes = [r for r in offline_app().routes if isinstance(r, APIRoute)]
    declared = {(m, r.path): declared_permission(r) for r in routes for m in r.methods or ()}
    assert declared["GET", "/admin/dead-letters"] == "events:manage"
    assert declared["POST", "/admin/dead-letters/{letter_id}/replay"] == "events:manage"
