"""Thousands of concurrent writes, with and without shard processes killed: exact totals.

Many clients restock and credit over HTTP while others debit, reserve and credit straight
at the shard actors, all on a few hot SKUs and wallets. Every request carries its own
idempotency key and is retried with that key until it has an answer; afterwards the stock,
the balances and the ledger must be exactly what the answered requests add up to.
"""

from __future__ import annotations

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
import sqlalchemy as sa

from actors._ops import Operation, Outcome, WrongShardError
from actors.inventory.actor import shard_actor_name
from actors.inventory.model import NewProduct, StockCommand
from actors.payments.actor import wallet_actor_name
from actors.payments.model import MoneyCommand
from actors.placement import Partitioning
from cluster import bootstrap
from cluster.localstack import LocalStack
from cluster.settings import Settings
from tests.e2e.conftest import STRONG_PASSWORD, staff_client

pytestmark = pytest.mark.slow
RETRYABLE_HTTP = {409, 429, 503}  # 409 only as "in progress" (checked by type below)


@dataclass
class Ledger:
    """What the answered requests add up to, per SKU and wallet."""

    stock: Counter[str] = field(default_factory=Counter)
    reserved: Counter[str] = field(default_factory=Counter)
    balance: Counter[str] = field(default_factory=Counter)
    movements: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, what: str) -> None:
        with self.lock:
            self.statuses[what] += 1


@dataclass
class World:
    skus: list[str]
    wallets: list[str]
    catalog: list[httpx.Client]
    finance: list[httpx.Client]


@pytest.fixture(scope="module")
def world(settings: Settings, cluster: list[Any], anon: httpx.Client) -> Iterator[World]:
    skus = [f"HOT-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    bootstrap.seed_products(settings, cluster, [NewProduct(s, "Hot", 100, "USD", 0) for s in skus])
    auth = ray.get_actor("auth", namespace=settings.namespace)
    wallets = []
    for _ in range(3):
        email = f"hot-{uuid.uuid4().hex[:8]}@example.com"
        user = ray.get(auth.create_user.remote(email, STRONG_PASSWORD, ["customer"], "e2e"))
        wallets.append(str(user.id))
    catalog = [staff_client(settings, anon, ["catalog_manager"]) for _ in range(4)]
    finance = [staff_client(settings, anon, ["finance"]) for _ in range(4)]
    yield World(skus, wallets, catalog, finance)
    for client in (*catalog, *finance):
        client.close()


def _http(ledger: Ledger, client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST with one idempotency key until an answer that is not "try again"."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 120
    while True:
        try:
            answer = client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:  # the replica went away mid-request
            ledger.seen(type(exc).__name__)
            time.sleep(0.2)
            continue
        ledger.seen(str(answer.status_code))
        retry = answer.status_code in RETRYABLE_HTTP and (
            answer.status_code != 409 or answer.json()["type"].endswith(":in-progress")
        )
        if not retry:
            return answer
        assert time.monotonic() < deadline, f"{path} never answered: {answer.text}"
        time.sleep(float(answer.headers.get("retry-after", "0.2")) * random.uniform(0.3, 1))


def _direct(
    ledger: Ledger,
    settings: Settings,
    name_of: Callable[[int], str],
    key: str,
    command: Any,
    *,
    layout: Partitioning,
) -> Outcome:
    """Call the owner of ``key`` with one command until it answers (same operation each time).

    Routes like the gateway: a shard that answers "not mine" says how many shards there
    are now, and the owner is computed again from that.
    """
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, f"{key} never answered"
        try:
            handle = ray.get_actor(name_of(layout.owner_of(key)), namespace=settings.namespace)
            (result,) = ray.get(handle.apply.remote([command]), timeout=30)
        except ValueError:  # no such shard: replaced by fewer; shard 0 knows how many now
            ledger.seen("ValueError")
            layout = _layout_now(settings, name_of, layout)
            time.sleep(0.2)
            continue
        except ray.exceptions.RayError as exc:
            ledger.seen(type(exc).__name__)
            time.sleep(0.2)
            continue
        if isinstance(result, WrongShardError):
            layout = Partitioning(settings.partitions, result.shards)
        if isinstance(result, Exception):
            ledger.seen(type(result).__name__)
            assert getattr(result, "retryable", False), repr(result)
            time.sleep(0.1)
            continue
        ledger.seen("ok" if result.refusal is None else result.refusal.code)
        return result


def _layout_now(
    settings: Settings, name_of: Callable[[int], str], layout: Partitioning
) -> Partitioning:
    try:
        first = ray.get_actor(name_of(0), namespace=settings.namespace)
        return Partitioning(settings.partitions, ray.get(first.info.remote(), timeout=30).shards)
    except (ray.exceptions.RayError, ValueError):
        return layout


def _jobs(
    settings: Settings, world: World, ledger: Ledger, count: int, seed: int
) -> list[Callable[[], None]]:
    rng = random.Random(seed)
    jobs: list[Callable[[], None]] = []

    def restock(sku: str, quantity: int) -> None:
        answer = _http(
            ledger, rng.choice(world.catalog), f"/products/{sku}/restock", {"quantity": quantity}
        )
        assert answer.status_code == 200, answer.text
        with ledger.lock:
            ledger.stock[sku] += quantity

    def credit_http(wallet: str, amount: int) -> None:
        body = {"amount": amount, "reason": "load"}
        answer = _http(ledger, rng.choice(world.finance), f"/wallets/{wallet}/credit", body)
        assert answer.status_code == 200, answer.text
        with ledger.lock:
            ledger.balance[wallet] += amount
            ledger.movements[wallet] += 1

    def money(wallet: str, kind: str, amount: int) -> None:
        op = Operation.once({"load": kind})
        command = MoneyCommand(op, uuid.UUID(wallet), kind, amount, "load")
        layout = bootstrap.wallet_partitioning(settings)
        outcome = _direct(ledger, settings, wallet_actor_name, wallet, command, layout=layout)
        if outcome.refusal is None:
            with ledger.lock:
                ledger.balance[wallet] += amount if kind == "credit" else -amount
                ledger.movements[wallet] += 1
        else:
            assert outcome.refusal.code == "insufficient_funds"

    def reserve(sku: str, quantity: int) -> None:
        command = StockCommand(Operation.once({"load": "reserve"}), sku, "reserve", quantity)
        layout = bootstrap.partitioning(settings)
        outcome = _direct(ledger, settings, shard_actor_name, sku, command, layout=layout)
        if outcome.refusal is None:
            with ledger.lock:
                ledger.stock[sku] -= quantity
                ledger.reserved[sku] += quantity
        else:
            assert outcome.refusal.code == "out_of_stock"

    makers: dict[str, Callable[[str, str, int], Callable[[], None]]] = {
        "restock": lambda s, _, n: lambda: restock(s, n),
        "credit_http": lambda _, w, n: lambda: credit_http(w, n * 100),
        "credit": lambda _, w, n: lambda: money(w, "credit", n * 100),
        "debit": lambda _, w, n: lambda: money(w, "debit", n * 100),
        "reserve": lambda s, _, n: lambda: reserve(s, n),
    }
    for _ in range(count):
        kind = rng.choices(list(makers), [3, 3, 2, 4, 3])[0]
        sku, wallet = rng.choice(world.skus), rng.choice(world.wallets)
        jobs.append(makers[kind](sku, wallet, rng.randint(1, 9)))
    return jobs


def _run(jobs: list[Callable[[], None]], workers: int = 48) -> None:
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _check(stack: LocalStack, world: World, ledger: Ledger, before: dict[str, Any]) -> None:
    engine = sa.create_engine(stack.database_url)
    with engine.connect() as conn:
        for sku in world.skus:
            available, reserved = conn.execute(
                sa.text("SELECT available, reserved FROM products WHERE sku = :s"), {"s": sku}
            ).one()
            start = before["products"][sku]
            assert available == start[0] + ledger.stock[sku], sku
            assert reserved == start[1] + ledger.reserved[sku], sku
            assert available >= 0 and reserved >= 0
        for wallet in world.wallets:
            balance = conn.execute(
                sa.text("SELECT balance FROM wallets WHERE user_id = :w"), {"w": wallet}
            ).scalar_one()
            assert balance == before["wallets"][wallet] + ledger.balance[wallet], wallet
            entries = conn.execute(
                sa.text(
                    "SELECT amount, balance_after FROM ledger_entries "
                    "WHERE wallet_id = :w ORDER BY seq"
                ),
                {"w": wallet},
            ).all()
            assert len(entries) == before["entries"][wallet] + ledger.movements[wallet]
            assert sum(a for a, _ in entries) == balance  # the balance is the sum of entries
            running = 0
            for amount, after in entries:  # each entry's balance_after follows from the last
                running += amount
                assert after == running and after >= 0
        unbalanced = conn.execute(
            sa.text(
                "SELECT movement_id FROM ledger_entries GROUP BY movement_id "
                "HAVING sum(amount) <> 0 OR count(*) <> 2"
            )
        ).all()
        assert unbalanced == []
    engine.dispose()


def _snapshot(stack: LocalStack, world: World) -> dict[str, Any]:
    engine = sa.create_engine(stack.database_url)
    with engine.connect() as conn:
        products = {
            s: tuple(
                conn.execute(
                    sa.text("SELECT available, reserved FROM products WHERE sku = :s"), {"s": s}
                ).one()
            )
            for s in world.skus
        }
        wallets = {
            w: conn.execute(
                sa.text("SELECT balance FROM wallets WHERE user_id = :w"), {"w": w}
            ).scalar_one()
            for w in world.wallets
        }
        entries = {
            w: conn.execute(
                sa.text("SELECT count(*) FROM ledger_entries WHERE wallet_id = :w"), {"w": w}
            ).scalar_one()
            for w in world.wallets
        }
    engine.dispose()
    return {"products": products, "wallets": wallets, "entries": entries}


def test_concurrent_writes_on_hot_keys_end_with_exact_totals(
    settings: Settings, stack: LocalStack, world: World
) -> None:
    ledger = Ledger()
    before = _snapshot(stack, world)
    _run(_jobs(settings, world, ledger, 2000, seed=7))
    _check(stack, world, ledger, before)
    assert ledger.statuses["500"] == 0


def _shard_pids(settings: Settings) -> list[int]:
    names = (*bootstrap.shard_names(settings), *bootstrap.wallet_shard_names(settings))
    pids = []
    for name in names:
        try:
            handle = ray.get_actor(name, namespace=settings.namespace)
            pids.append(ray.get(handle.info.remote(), timeout=10).pid)
        except ray.exceptions.RayError:
            continue
    return pids


def test_killing_shard_processes_under_load_loses_and_doubles_nothing(
    settings: Settings, stack: LocalStack, world: World
) -> None:
    ledger = Ledger()
    before = _snapshot(stack, world)
    stop = threading.Event()
    killed: list[int] = []

    def killer() -> None:
        rng = random.Random(11)
        while not stop.wait(1.5) and len(killed) < 5:
            pids = _shard_pids(settings)
            if pids:
                pid = rng.choice(pids)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        _run(_jobs(settings, world, ledger, 2000, seed=13))
    finally:
        stop.set()
        thread.join()
    assert len(killed) >= 3, f"only {len(killed)} kills happened during the load"
    _check(stack, world, ledger, before)
    assert ledger.statuses["500"] == 0, ledger.statuses


def _replace_shards(settings: Settings, stack: LocalStack, release: str | None = None) -> None:
    """What `shoal up` does with shards whose layout or code differ: a handoff."""
    for shards in bootstrap.shard_sets(settings, stack):
        handles = bootstrap.ensure_shards(settings, stack, shards, release=release)
        bootstrap.shard_infos(handles, 120)


def test_a_handoff_to_more_shards_and_back_under_load_loses_and_doubles_nothing(
    settings: Settings, stack: LocalStack, world: World
) -> None:
    more = settings.model_copy(update={"inventory_shards": 3, "wallet_shards": 3})
    for target, release in ((more, None), (settings, "next-release")):
        ledger = Ledger()
        before = _snapshot(stack, world)
        with ThreadPoolExecutor(1) as background:
            load = background.submit(_run, _jobs(settings, world, ledger, 600, seed=5))
            time.sleep(1.0)
            _replace_shards(target, stack, release)
            load.result()  # raises what the load raised
        _check(stack, world, ledger, before)
        assert ledger.statuses["500"] == 0, ledger.statuses
        infos = bootstrap.shard_infos(
            [
                ray.get_actor(n, namespace=settings.namespace)
                for n in (*bootstrap.shard_names(target), *bootstrap.wallet_shard_names(target))
            ]
        )
        assert {i.shards for i in infos} == {target.inventory_shards}
        assert not any(i.retired for i in infos)
    assert {i.release for i in infos} == {"next-release"}
