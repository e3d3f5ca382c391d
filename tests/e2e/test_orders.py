"""Orders over HTTP: the PlaceOrder and CancelOrder sagas, their failures, and operators."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import ray
import sqlalchemy as sa

from actors.placement import Partitioning
from cluster.localstack import LocalStack
from cluster.settings import Settings
from sagas.actor import orchestrator_actor_name
from sagas.definition import SagaState, StepState
from sagas.orders import order_view
from storage.connections import ConnectionConfig, Connections
from storage.products import SqlUnitOfWorkFactory
from storage.records import OrderLine, OrderRecord
from tests.e2e.conftest import PatientTransport, register_and_login, staff_client

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def operator(settings: Settings, anon: httpx.Client) -> Iterator[httpx.Client]:
    with staff_client(settings, anon, ["operator"]) as client:
        yield client


class Shop:
    """Makes products and funded customers for a test."""

    def __init__(self, settings: Settings, anon: httpx.Client, catalog: httpx.Client,
                 finance: httpx.Client) -> None:  # fmt: skip
        self.settings, self.anon, self.catalog, self.finance = settings, anon, catalog, finance

    def product(self, stock: int, price: int = 100) -> str:
        sku = f"O-{uuid.uuid4().hex[:10]}"
        body = {"sku": sku, "name": "Kettle", "price": price, "initial_stock": stock}
        assert self.catalog.post("/products", json=body).status_code == 201
        return sku

    def customer(self, balance: int) -> httpx.Client:
        tokens = register_and_login(self.anon)
        headers = {"authorization": f"Bearer {tokens['access_token']}"}
        client = httpx.Client(base_url=self.settings.base_url, timeout=60, headers=headers,
                              transport=PatientTransport())  # fmt: skip
        client.user_id = tokens["user_id"]  # type: ignore[attr-defined]
        if balance:
            credit = self.finance.post(
                f"/wallets/{tokens['user_id']}/credit",
                json={"amount": balance, "reason": "test funds"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert credit.status_code == 200, credit.text
        return client

    def available(self, sku: str) -> int:
        return int(self.catalog.get(f"/products/{sku}").json()["available"])


@pytest.fixture(scope="module")
def shop(
    settings: Settings, anon: httpx.Client, catalog: httpx.Client, finance: httpx.Client
) -> Shop:
    return Shop(settings, anon, catalog, finance)


def place(
    client: httpx.Client, items: list[dict[str, Any]], key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return client.post("/orders", json={"items": items}, headers=headers)


def settle(client: httpx.Client, order_id: str) -> dict[str, Any]:
    answer = client.get(f"/orders/{order_id}", params={"wait": 20})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] not in ("PENDING", "CANCELLING"), body
    return body


def balance(client: httpx.Client) -> int:
    return int(client.get("/wallets/me").json()["balance"])


def test_an_order_is_accepted_then_confirmed_with_its_steps(shop: Shop) -> None:
    buyer, tea, mug = shop.customer(1000), shop.product(5, 120), shop.product(2, 300)
    answer = place(buyer, [{"sku": tea, "quantity": 2}, {"sku": mug, "quantity": 1}])
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status"] == "PENDING" and accepted["total"] == 540
    assert accepted["currency"] == "USD"
    assert answer.headers["location"] == f"/orders/{accepted['id']}"
    order = settle(buyer, accepted["id"])
    assert order["status"] == "CONFIRMED" and order.get("failure_reason") is None
    assert [(i["sku"], i["quantity"], i["price"]) for i in order["items"]] == [
        (tea, 2, 120), (mug, 1, 300)
    ]  # fmt: skip
    assert [s["name"] for s in order["steps"]] == ["reserve_stock", "debit_wallet", "confirm_order"]
    assert {s["status"] for s in order["steps"]} == {"SUCCEEDED"}
    assert balance(buyer) == 460
    assert (shop.available(tea), shop.available(mug)) == (3, 1)
    ledger = buyer.get("/wallets/me/ledger").json()["items"]
    assert (ledger[0]["amount"], ledger[0]["kind"]) == (-540, "debit")


@pytest.mark.parametrize(
    ("stock", "funds", "sku_known", "reason"),
    [
        (1, 1000, True, "out_of_stock"),
        (5, 100, True, "insufficient_funds"),
        (5, 1000, False, "unknown_product"),
    ],
)
def test_a_failed_order_says_why_and_changes_nothing(
    shop: Shop, stock: int, funds: int, sku_known: bool, reason: str
) -> None:
    buyer, tea, other = shop.customer(funds), shop.product(5), shop.product(stock)
    second = other if sku_known else f"NOPE-{uuid.uuid4().hex[:6]}"
    answer = place(buyer, [{"sku": tea, "quantity": 1}, {"sku": second, "quantity": 2}])
    assert answer.status_code == 202, answer.text
    order = settle(buyer, answer.json()["id"])
    assert (order["status"], order["failure_reason"]) == ("FAILED", reason)
    assert balance(buyer) == funds
    assert (shop.available(tea), shop.available(other)) == (5, stock)


def test_the_same_key_places_once_and_another_body_conflicts(shop: Shop) -> None:
    buyer, tea = shop.customer(1000), shop.product(5)
    key, items = uuid.uuid4().hex, [{"sku": tea, "quantity": 1}]
    first, again = place(buyer, items, key), place(buyer, items, key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = place(buyer, [{"sku": tea, "quantity": 2}], key)
    assert other.status_code == 409 and other.headers["content-type"].startswith(PROBLEM)
    settle(buyer, first.json()["id"])
    assert balance(buyer) == 900 and shop.available(tea) == 4
    missing = buyer.post("/orders", json={"items": items})
    assert missing.status_code == 428


BAD_ORDERS: list[Any] = [
    {"items": []},
    {"items": [{"sku": "A", "quantity": 0}]},
    {"items": [{"sku": "A", "quantity": 10**6 + 1}]},
    {"items": [{"sku": "A", "quantity": "1"}]},
    {"items": [{"sku": "A", "quantity": 1.0}]},
    {"items": [{"sku": "A", "quantity": True}]},
    {"items": [{"sku": "bad sku", "quantity": 1}]},
    {"items": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]},
    {"items": [{"sku": f"S{i}", "quantity": 1} for i in range(51)]},
    {"items": [{"sku": "A", "quantity": 1, "price": 1}]},
    {"items": [{"sku": "A", "quantity": 1}], "total": 1},
    {"items": [{"sku": "A", "quantity": 1}], "id": str(uuid.uuid4())},
    {"items": [{"sku": "A", "quantity": 1}], "status": "CONFIRMED"},
]


@pytest.mark.parametrize("body", BAD_ORDERS)
def test_a_bad_order_is_refused_and_creates_nothing(shop: Shop, body: Any) -> None:
    buyer = shop.customer(0)
    answer = buyer.post("/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert buyer.get("/orders/" + str(uuid.uuid4())).status_code == 404


def test_a_confirmed_order_is_cancelled_refunded_and_restocked_once(shop: Shop) -> None:
    buyer, tea = shop.customer(1000), shop.product(5, 150)
    order_id = place(buyer, [{"sku": tea, "quantity": 2}]).json()["id"]
    settle(buyer, order_id)
    cancel = buyer.post(f"/orders/{order_id}/cancel")
    assert cancel.status_code == 202, cancel.text
    assert cancel.json() == {"id": order_id, "status": "CANCELLING"}
    again = buyer.post(f"/orders/{order_id}/cancel")
    assert again.status_code == 409 and again.json()["type"].endswith("order-state")
    order = settle(buyer, order_id)
    assert order["status"] == "CANCELLED"
    assert [s["name"] for s in order["steps"]][-2:] == ["refund_payment", "return_stock"]
    assert balance(buyer) == 1000 and shop.available(tea) == 5
    assert buyer.post(f"/orders/{order_id}/cancel").status_code == 409


def test_a_failed_order_cannot_be_cancelled(shop: Shop) -> None:
    buyer, tea = shop.customer(0), shop.product(5)
    order_id = place(buyer, [{"sku": tea, "quantity": 1}]).json()["id"]
    assert settle(buyer, order_id)["status"] == "FAILED"
    assert buyer.post(f"/orders/{order_id}/cancel").status_code == 409


def test_another_users_order_is_not_found_and_customers_are_not_operators(
    shop: Shop, operator: httpx.Client
) -> None:
    owner, stranger, tea = shop.customer(1000), shop.customer(1000), shop.product(5)
    order_id = place(owner, [{"sku": tea, "quantity": 1}]).json()["id"]
    settle(owner, order_id)
    assert stranger.get(f"/orders/{order_id}").status_code == 404
    assert stranger.post(f"/orders/{order_id}/cancel").status_code == 404
    assert stranger.get("/orders/not-a-uuid").status_code == 404
    assert owner.get(f"/orders/{order_id}").json()["status"] == "CONFIRMED"
    for path in ("/admin/sagas", f"/admin/sagas/{order_id}"):
        assert stranger.get(path).status_code == 403
    assert stranger.post(f"/admin/sagas/{order_id}/retry").status_code == 403
    assert operator.post("/orders", json={"items": [{"sku": tea, "quantity": 1}]},
                         headers={"Idempotency-Key": "x"}).status_code == 403  # fmt: skip


def test_operators_see_sagas_with_their_log_and_cannot_retry_a_finished_one(
    shop: Shop, operator: httpx.Client
) -> None:
    buyer, tea = shop.customer(1000), shop.product(5)
    order_id = place(buyer, [{"sku": tea, "quantity": 1}]).json()["id"]
    settle(buyer, order_id)
    saga = operator.get(f"/admin/sagas/{order_id}").json()
    assert (saga["kind"], saga["status"], saga["order_id"]) == (
        "place_order",
        "COMPLETED",
        order_id,
    )
    transitions = [(e["step"], e["transition"]) for e in saga["log"]]
    assert transitions[:2] == [("-", "created"), ("reserve_stock", "started")]
    assert transitions[-1] == ("-", "completed")
    assert saga["trace_id"]
    listed = operator.get("/admin/sagas", params={"status": "COMPLETED", "limit": 100}).json()
    assert all(s["status"] == "COMPLETED" for s in listed["items"])
    assert operator.get("/admin/sagas", params={"status": "NOPE"}).status_code == 422
    retry = operator.post(f"/admin/sagas/{order_id}/retry")
    assert retry.status_code == 409 and retry.json()["type"].endswith("saga-state")
    assert operator.get(f"/admin/sagas/{uuid.uuid4()}").status_code == 404


def test_my_orders_list_follows_the_truth_newest_first(shop: Shop) -> None:
    buyer, other, tea = shop.customer(1000), shop.customer(1000), shop.product(50, 10)
    placed = [place(buyer, [{"sku": tea, "quantity": n}]).json()["id"] for n in (1, 2, 3)]
    place(other, [{"sku": tea, "quantity": 1}])
    truth = {i: settle(buyer, i)["status"] for i in placed}

    def listed() -> list[tuple[str, str]]:
        first = buyer.get("/orders", params={"limit": 2}).json()
        rest = buyer.get("/orders", params={"cursor": first["next_cursor"]}).json()
        return [(o["id"], o["status"]) for o in first["items"] + rest["items"]]

    deadline = time.monotonic() + 10  # the read model trails the writes by a moment
    while listed() != [(i, truth[i]) for i in reversed(placed)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listed() == [(i, truth[i]) for i in reversed(placed)]
    assert buyer.get("/orders", params={"cursor": "nonsense"}).status_code == 422


def test_a_restarted_orchestrator_resumes_a_saga_nobody_asks_about(
    settings: Settings, stack: LocalStack, shop: Shop
) -> None:
    """A saga left RUNNING by a crash finishes after Ray restarts its orchestrator, unasked."""
    buyer, tea = shop.customer(1000), shop.product(5, 100)
    order_id = uuid.uuid4()
    layout = Partitioning(settings.partitions, settings.order_shards)
    now = datetime.now(UTC)
    line = OrderLine(tea, 2, 100)
    order = OrderRecord(order_id, uuid.UUID(buyer.user_id), "PENDING", (line,), 200, "USD",  # type: ignore[attr-defined]
                        None, "resume-test", now, now)  # fmt: skip
    steps = [StepState("reserve_stock", "RUNNING"), StepState("debit_wallet"),
             StepState("confirm_order")]  # fmt: skip
    saga = SagaState(order_id, "place_order", order_id, layout.partition_of(str(order_id)),
                     "RUNNING", steps, {"order": order_view(order)}, "resume-test",
                     now + timedelta(seconds=60), now, now)  # fmt: skip

    async def write() -> None:
        conn = Connections(ConnectionConfig(stack.database_url, stack.redis_url))
        try:
            async with SqlUnitOfWorkFactory(conn.engine)() as uow:
                await uow.orders.add_many([order])
                await uow.sagas.add_many([saga.to_record()])
                await uow.commit()
        finally:
            await conn.close()

    asyncio.run(write())  # as if its orchestrator had died right after accepting it
    owner = ray.get_actor(orchestrator_actor_name(layout.owner_of(str(order_id))),
                          namespace=settings.namespace)  # fmt: skip
    os.kill(ray.get(owner.info.remote(), timeout=30).pid, signal.SIGKILL)
    engine = sa.create_engine(stack.database_url)
    deadline = time.monotonic() + 60
    status = "PENDING"
    while status == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
        with engine.connect() as conn:
            status = conn.execute(sa.text("SELECT status FROM orders WHERE id = :i"),
                                  {"i": order_id}).scalar_one()  # fmt: skip
    engine.dispose()
    assert status == "CONFIRMED"
    assert balance(buyer) == 800 and shop.available(tea) == 3
