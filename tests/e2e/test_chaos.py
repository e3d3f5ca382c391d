"""Chaos: thousands of orders while processes die, servers restart and the provider fails.

Seeded and repeatable in what it asks for (``SHOAL_CHAOS_SEED``): the orders, their lines,
the cancellations and the order of the faults. Where a fault lands in the load depends on
timing, as it would in production. After the faults stop, the test waits for every saga to
finish and for the event side to catch up, then checks the invariants of issue 5 against
PostgreSQL, the read models and the provider's records.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import ray
import redis
import sqlalchemy as sa
from ray.util.state import list_actors

from actors.events.handlers import SUBSCRIPTIONS
from cluster.localstack import LocalStack
from cluster.settings import Settings
from storage.relay import subscription_params
from tests.e2e.conftest import PatientTransport, register_and_login, staff_client
from tests.provider_sim import ProviderSim

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("SHOAL_CHAOS_SEED", "20261125"))
ORDERS = 2000
CUSTOMERS = 40
FUNDS = 6000
SKUS = 10
STOCK = 80
CLIENTS = 24
RETRYABLE = {409, 429, 502, 503, 504}
# How long after a gateway replica is killed the ingress may still answer for it: until Serve
# has replaced the replica and HAProxy's health check sees the new one.
INGRESS_GAP_S = 60


@dataclass
class Record:
    """What the clients saw: accepted orders, answers by status, requests that gave up."""

    orders: dict[str, str] = field(default_factory=dict)  # order id -> customer id
    answers: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    restocked: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # what each 500 answer said
    ingress_errors: list[float] = field(default_factory=list)  # when the ingress said 500
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, answer: str) -> None:
        with self.lock:
            self.answers[answer] += 1


def _send(
    record: Record, client: httpx.Client, path: str, body: object, key: str | None
) -> httpx.Response | None:
    """POST until answered for good (the same key each time); ``None`` if it never was."""
    headers = {"Idempotency-Key": key} if key else {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            answer = client.post(path, json=body, headers=headers)
        except httpx.TransportError as exc:
            record.saw(type(exc).__name__)
            time.sleep(random.uniform(0.1, 0.5))
            continue
        if _from_ingress(answer):
            record.saw("500 from the ingress")
            with record.lock:
                record.ingress_errors.append(time.monotonic())
            time.sleep(random.uniform(0.1, 0.5))
            continue
        record.saw(str(answer.status_code))
        if answer.status_code == 500:
            record.server_errors.append(f"{path} {answer.headers} {answer.text[:300]}")
        in_progress = answer.status_code == 409 and "in-progress" in answer.text
        if answer.status_code in RETRYABLE - {409} or in_progress:
            time.sleep(float(answer.headers.get("retry-after", "0.5")) * random.uniform(0.3, 1))
            continue
        return answer
    record.gave_up.append(path)
    return None


def _from_ingress(answer: httpx.Response) -> bool:
    """Whether this is HAProxy's answer for a backend it lost, not the gateway's.

    Ray's HAProxy ingress answers a 502, 503 or 504 of its own (the replica died with the
    request, or no replica is up yet) with one fixed plain "Internal Server Error". To the
    client it is a lost connection: whether the request was applied is unknown, and sending
    it again with the same key is safe. Every answer of the gateway carries X-Request-ID.
    """
    return (
        answer.status_code == 500
        and "x-request-id" not in answer.headers
        and answer.text == "Internal Server Error"
    )


@dataclass
class Shop:
    skus: dict[str, int]  # sku -> price
    customers: list[httpx.Client]
    catalog: httpx.Client


@pytest.fixture(scope="module")
def shop(settings: Settings, cluster: list[Any], anon: httpx.Client) -> Iterator[Shop]:
    rng = random.Random(SEED)
    catalog = staff_client(settings, anon, ["catalog_manager"])
    finance = staff_client(settings, anon, ["finance"])
    skus = {
        f"CH-{SEED}-{i}-{uuid.uuid4().hex[:4]}": rng.randrange(50, 400, 10) for i in range(SKUS)
    }
    for sku, price in skus.items():
        body = {"sku": sku, "name": "Chaos", "price": price, "initial_stock": STOCK}
        assert catalog.post("/products", json=body).status_code == 201
    customers = []
    for _ in range(CUSTOMERS):
        tokens = register_and_login(anon)
        client = httpx.Client(
            base_url=settings.base_url,
            timeout=30,
            headers={"authorization": f"Bearer {tokens['access_token']}"},
            transport=PatientTransport(),
        )
        client.user_id = tokens["user_id"]  # type: ignore[attr-defined]
        credit = finance.post(
            f"/wallets/{tokens['user_id']}/credit",
            json={"amount": FUNDS, "reason": "chaos funds"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert credit.status_code == 200, credit.text
        customers.append(client)
    finance.close()
    yield Shop(skus, customers, catalog)
    for client in (*customers, catalog):
        client.close()


def _actor_pids(match: Callable[[Any], bool]) -> list[int]:
    return [a.pid for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000) if match(a)]


class Faults:
    """The fault schedule, applied one after another by a thread."""

    def __init__(self, settings: Settings, stack: LocalStack, provider: ProviderSim) -> None:
        self.settings, self.stack, self.provider = settings, stack, provider
        self.done: list[str] = []
        self.gateway_kills: list[float] = []  # when each gateway replica was killed
        self.error: Exception | None = None
        self.stop = threading.Event()

    def schedule(self) -> list[Callable[[], None]]:
        kinds = [
            *[self.kill("orchestrator-")] * 3,
            *[self.kill("inventory-shard-")] * 2,
            *[self.kill("wallet-shard-")] * 2,
            *[self.kill_gateway] * 2,
            *[self.kill("event-")] * 2,
            *[self.terminate_connections] * 2,
            self.restart_postgres,
            self.restart_redis,
            self.flush_redis,
            self.provider_fails,
            self.provider_stalls,
        ]
        random.Random(SEED).shuffle(kinds)
        return kinds

    def run(self) -> None:
        try:
            for fault in self.schedule():
                if self.stop.wait(1.0):
                    return
                fault()
        except Exception as exc:  # reported by the test, which reads self.error
            self.error = exc
        finally:
            self.provider.set_mode("recover")

    def kill(self, prefix: str) -> Callable[[], None]:
        def fault() -> None:
            self._kill_one(f"kill {prefix}", lambda a: (a.name or "").startswith(prefix))

        return fault

    def kill_gateway(self) -> None:
        self.gateway_kills.append(time.monotonic())
        self._kill_one("kill gateway replica", lambda a: "gateway" in (a.class_name or ""))

    def _kill_one(self, what: str, match: Callable[[Any], bool]) -> None:
        """SIGKILL one live process the filter picks (seeded); Ray or Serve replaces it."""
        deadline = time.monotonic() + 30  # the last one killed may still be coming back
        while not (pids := sorted(_actor_pids(match))) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert pids, f"{what}: no such process alive"
        pid = random.Random(SEED + len(self.done)).choice(pids)
        os.kill(pid, signal.SIGKILL)
        self.done.append(f"{what} (pid {pid})")

    def terminate_connections(self) -> None:
        engine = sa.create_engine(self.stack.database_url)
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        engine.dispose()
        self.done.append("terminate connections")

    def restart_postgres(self) -> None:
        self.stack.postgres.stop()
        time.sleep(1)
        self.stack.postgres.start()
        self.done.append("restart postgres")

    def restart_redis(self) -> None:
        self.stack.redis.stop()
        time.sleep(1)
        self.stack.redis.start()
        self.done.append("restart redis")

    def flush_redis(self) -> None:
        redis.Redis.from_url(self.stack.redis_url).flushall()
        self.done.append("flushall redis")

    def provider_fails(self) -> None:
        self.provider.set_mode("fail")
        self.stop.wait(3)
        self.provider.set_mode("recover")
        self.done.append("provider fails")

    def provider_stalls(self) -> None:
        self.provider.set_mode("stall", stall_s=5)
        self.stop.wait(3)
        self.provider.set_mode("recover")
        self.done.append("provider stalls")


def _orders(shop: Shop, record: Record, faults: threading.Thread) -> None:
    """Place orders from many clients until ORDERS are in and the faults have all run."""
    rng = random.Random(SEED)
    skus = sorted(shop.skus)
    plan = []
    for n in range(ORDERS * 2):
        lines = rng.sample(skus, rng.choice((1, 1, 2)))
        items = [{"sku": s, "quantity": rng.randint(1, 3)} for s in lines]
        plan.append((n % CUSTOMERS, items, f"chaos-{SEED}-{n}"))
    cursor = iter(plan)
    lock = threading.Lock()

    def client_loop() -> None:
        while True:
            with lock:
                if len(record.orders) >= ORDERS and not faults.is_alive():
                    return
                job = next(cursor, None)
            if job is None:
                return
            who, items, key = job
            customer = shop.customers[who]
            answer = _send(record, customer, "/orders", {"items": items}, key)
            if answer is not None and answer.status_code == 202:
                with lock:
                    record.orders[answer.json()["id"]] = customer.user_id  # type: ignore[attr-defined]

    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client_loop) for _ in range(CLIENTS)]:
            future.result()


def _restock(shop: Shop, record: Record, stop: threading.Event) -> None:
    """Keep some stock coming, so that orders keep being confirmed all along."""
    rng = random.Random(SEED + 1)
    n = 0
    while not stop.wait(1.0):
        sku = rng.choice(sorted(shop.skus))
        quantity = rng.randint(10, 30)
        answer = _send(
            record,
            shop.catalog,
            f"/products/{sku}/restock",
            {"quantity": quantity},
            f"re-{SEED}-{n}",
        )
        if answer is not None and answer.status_code == 200:
            record.restocked[sku] += quantity
        n += 1


def _cancel_some(shop: Shop, record: Record, engine: sa.Engine) -> set[str]:
    """Cancel a seeded tenth of the orders that were confirmed (while faults may still run)."""
    rng = random.Random(SEED + 2)
    chosen = rng.sample(sorted(record.orders), len(record.orders) // 10)
    by_user = {c.user_id: c for c in shop.customers}  # type: ignore[attr-defined]
    cancelled = set()
    for order_id in chosen:
        with engine.connect() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM orders WHERE id = :i"), {"i": order_id}
            ).scalar_one()
        if status != "CONFIRMED":
            continue
        answer = _send(
            record,
            by_user[record.orders[order_id]],
            f"/orders/{order_id}/cancel",
            None,
            f"cx-{order_id}",
        )
        if answer is not None and answer.status_code == 202:
            cancelled.add(order_id)
    return cancelled


def _until_none_left(engine: sa.Engine, count_sql: str, timeout_s: float, **params: Any) -> None:
    """Wait until ``count_sql`` counts nothing; fail with the last count after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    left = _scalar(engine, count_sql, **params)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _scalar(engine, count_sql, **params)
    assert left == 0, f"{left} left after {timeout_s:.0f} s: {count_sql}"


def _scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def _rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def test_chaos_loses_and_doubles_nothing(
    settings: Settings, stack: LocalStack, provider: ProviderSim, shop: Shop
) -> None:
    record = Record()
    faults = Faults(settings, stack, provider)
    fault_thread = threading.Thread(target=faults.run, daemon=True)
    stop_restock = threading.Event()
    restock = threading.Thread(target=_restock, args=(shop, record, stop_restock), daemon=True)
    engine = sa.create_engine(stack.database_url, pool_pre_ping=True)
    fault_thread.start()
    restock.start()
    try:
        _orders(shop, record, fault_thread)
        cancelled = _cancel_some(shop, record, engine)
    finally:
        faults.stop.set()
        stop_restock.set()
        fault_thread.join()
        restock.join()
        provider.set_mode("recover")
    ids = sorted(record.orders)
    assert len(ids) >= ORDERS, (len(ids), record.answers)
    assert not record.gave_up, record.gave_up
    assert record.answers["500"] == 0, (record.answers, record.server_errors)
    unexplained = [  # the ingress's own 500 only while a killed gateway replica is replaced
        t
        for t in record.ingress_errors
        if not any(0 <= t - kill <= INGRESS_GAP_S for kill in faults.gateway_kills)
    ]
    assert unexplained == [], (record.answers, unexplained, faults.gateway_kills)
    assert faults.error is None, faults.error
    assert len(faults.done) == len(faults.schedule()), faults.done  # each fault happened

    # Every saga finishes once the faults stop.
    unsettled = (
        "SELECT count(*) FROM orders WHERE status IN ('PENDING', 'CANCELLING') AND id = ANY(:ids)"
    )
    _until_none_left(engine, unsettled, 60, ids=ids)
    stuck = _rows(
        engine, "SELECT id, status, error FROM sagas WHERE status NOT IN ('COMPLETED', 'FAILED')"
    )
    assert stuck == []
    columns = "id, user_id, status, items, total, failure_reason, trace_id"
    found = _rows(engine, f"SELECT {columns} FROM orders WHERE id = ANY(:ids)", ids=ids)
    orders = {str(r.id): r for r in found}
    statuses = Counter(o.status for o in orders.values())
    assert set(statuses) <= {"CONFIRMED", "FAILED", "CANCELLED"}, statuses
    assert statuses["CONFIRMED"] > 0 and statuses["FAILED"] > 0, statuses
    assert {i for i in cancelled if orders[i].status != "CANCELLED"} == set()

    _money_is_conserved(engine, shop, orders)
    _stock_is_conserved(engine, shop, orders, record)
    _events_are_handled_once_and_read_models_match(
        engine, settings=settings, shop=shop, orders=orders, ids=ids, provider=provider
    )


def _money_is_conserved(engine: sa.Engine, shop: Shop, orders: dict[str, Any]) -> None:
    assert _scalar(engine, "SELECT coalesce(sum(amount), 0) FROM ledger_entries") == 0
    unbalanced = (
        "SELECT movement_id FROM ledger_entries GROUP BY movement_id"
        " HAVING sum(amount) <> 0 OR count(*) <> 2"
    )
    assert _rows(engine, unbalanced) == []
    kept: Counter[str] = Counter()
    for order in orders.values():
        if order.status == "CONFIRMED":
            kept[str(order.user_id)] += order.total
    for customer in shop.customers:
        user = customer.user_id  # type: ignore[attr-defined]
        balance = _scalar(engine, "SELECT balance FROM wallets WHERE user_id = :u", u=user)
        assert balance == FUNDS - kept[user], user
    moves: Counter[tuple[str, str]] = Counter()
    for reference, kind, count in _rows(
        engine,
        "SELECT reference, kind, count(*) FROM ledger_entries WHERE wallet_id IS NOT NULL"
        " AND reference LIKE 'order:%' GROUP BY reference, kind",
    ):
        moves[(reference.removeprefix("order:"), kind)] = count
    for order_id, order in orders.items():
        debits, refunds = moves[(order_id, "debit")], moves[(order_id, "refund")]
        expected = {"CONFIRMED": (1, 0), "CANCELLED": (1, 1)}.get(order.status)
        if expected is None:  # FAILED: nothing, or a debit and its refund
            assert (debits, refunds) in {(0, 0), (1, 1)}, (order_id, debits, refunds)
        else:
            assert (debits, refunds) == expected, (order_id, order.status, debits, refunds)


def _stock_is_conserved(
    engine: sa.Engine, shop: Shop, orders: dict[str, Any], record: Record
) -> None:
    sold = _sold(orders)
    for sku in shop.skus:
        available, reserved = _rows(
            engine, "SELECT available, reserved FROM products WHERE sku = :s", s=sku
        )[0]
        assert reserved == 0, sku
        assert available == STOCK + record.restocked[sku] - sold[sku], sku


def _sold(orders: dict[str, Any]) -> Counter[str]:
    """Units of each SKU in orders that stand (CONFIRMED; a CANCELLED order gave them back)."""
    sold: Counter[str] = Counter()
    for order in orders.values():
        if order.status == "CONFIRMED":
            for line in json.loads(order.items):
                sold[line["sku"]] += line["quantity"]
    return sold


def _worker_states(settings: Settings) -> list[Any]:
    """What each event actor says of itself (for a failure message)."""
    states = []
    for name in ("event-relay", *(f"event-worker-{g}" for g in SUBSCRIPTIONS)):
        try:
            actor = ray.get_actor(name, namespace=settings.namespace)
            states.append(ray.get(actor.info.remote(), timeout=10))
        except Exception as exc:  # a diagnostic, whatever went wrong
            states.append(f"{name}: {exc!r}")
    return states


def _events_are_handled_once_and_read_models_match(
    engine: sa.Engine,
    *,
    settings: Settings,
    shop: Shop,
    orders: dict[str, Any],
    ids: list[str],
    provider: ProviderSim,
) -> None:
    pending = (  # every event of the run (orders, products, wallets), by each group taking it
        "SELECT g.name, o.type, count(*) FROM outbox o,"
        " unnest(CAST(:groups AS text[]), CAST(:types AS text[])) AS g(name, types)"
        " WHERE o.type = ANY(string_to_array(g.types, ','))"
        " AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = g.name AND i.event_id = o.id)"
        " GROUP BY g.name, o.type"
    )
    params = subscription_params(SUBSCRIPTIONS)
    deadline = time.monotonic() + 60
    while (left := _rows(engine, pending, **params)) and time.monotonic() < deadline:
        time.sleep(0.5)
    unpublished = _scalar(engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert not left, (left, f"unpublished {unpublished}", _worker_states(settings))
    recorded = _scalar(engine, "SELECT count(*) FROM inbox i JOIN outbox o ON o.id = i.event_id")
    assert recorded >= 2 * len(orders)  # an order's placement and its end, at least
    assert _scalar(engine, "SELECT count(*) FROM dead_letters") == 0
    views = _rows(engine, "SELECT id, status FROM order_views WHERE id = ANY(:ids)", ids=ids)
    assert {str(r.id): r.status for r in views} == {i: o.status for i, o in orders.items()}
    sales = _rows(
        engine, "SELECT sku, units FROM product_sales WHERE sku = ANY(:s)", s=list(shop.skus)
    )
    assert {r.sku: r.units for r in sales if r.units} == dict(_sold(orders))
    confirmed_ever = {i for i, o in orders.items() if o.status in ("CONFIRMED", "CANCELLED")}
    records = [r for r in provider.records().values() if r["body"]["order_id"] in orders]
    notified = Counter(r["body"]["order_id"] for r in records)
    assert set(notified) == confirmed_ever
    assert set(notified.values()) == {1}
    assert all(r["request_id"] == orders[r["body"]["order_id"]].trace_id for r in records)
