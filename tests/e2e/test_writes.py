"""Catalogue, stock and wallet writes over HTTP: permissions, bad input, idempotency."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cluster.settings import Settings
from tests.e2e.conftest import register_and_login

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def customer(settings: Settings, anon: httpx.Client) -> Iterator[httpx.Client]:
    """A fresh customer with an empty wallet."""
    tokens = register_and_login(anon)
    headers = {"authorization": f"Bearer {tokens['access_token']}"}
    with httpx.Client(base_url=settings.base_url, timeout=30, headers=headers) as client:
        client.user_id = tokens["user_id"]  # type: ignore[attr-defined]
        yield client


def _sku() -> str:
    return f"W-{uuid.uuid4().hex[:10]}"


def _product(catalog: httpx.Client, stock: int = 5) -> str:
    sku = _sku()
    body = {"sku": sku, "name": "Widget", "price": 1250, "initial_stock": stock}
    created = catalog.post("/products", json=body)
    assert created.status_code == 201, created.text
    return sku


def _key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def test_a_created_product_is_readable_and_its_writes_show_on_the_next_read(
    catalog: httpx.Client, http: httpx.Client
) -> None:
    sku = _sku()
    body = {"sku": sku, "name": "Gadget", "price": 999, "currency": "USD", "initial_stock": 3}
    created = catalog.post("/products", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/products/{sku}"
    assert created.json()["available"] == 3
    assert http.get(f"/products/{sku}").json()["available"] == 3  # now cached

    restocked = catalog.post(f"/products/{sku}/restock", json={"quantity": 4})
    assert restocked.status_code == 200, restocked.text
    assert restocked.json() == {"available": 7}
    assert http.get(f"/products/{sku}").json()["available"] == 7

    patched = catalog.patch(f"/products/{sku}", json={"name": "Gadget II", "price": 1099})
    assert patched.status_code == 200, patched.text
    seen = http.get(f"/products/{sku}").json()
    assert (seen["name"], seen["price"], seen["available"]) == ("Gadget II", 1099, 7)

    again = catalog.post("/products", json=body)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith(PROBLEM)


def test_a_credit_moves_money_once_and_shows_in_wallet_and_ledger(
    finance: httpx.Client, customer: httpx.Client
) -> None:
    user_id = customer.user_id  # type: ignore[attr-defined]
    assert customer.get("/wallets/me").json()["balance"] == 0  # an empty wallet from the start
    for amount in (500, 700):
        answer = finance.post(
            f"/wallets/{user_id}/credit",
            json={"amount": amount, "reason": "top-up"},
            headers=_key(),
        )
        assert answer.status_code == 200, answer.text
    assert answer.json() == {"balance": 1200}
    wallet = customer.get("/wallets/me").json()
    assert (wallet["balance"], wallet["currency"], wallet["user_id"]) == (1200, "USD", user_id)
    assert finance.get(f"/wallets/{user_id}").json()["balance"] == 1200
    first = customer.get("/wallets/me/ledger", params={"limit": 1}).json()
    assert [e["amount"] for e in first["items"]] == [700]
    assert first["items"][0]["balance_after"] == 1200
    assert first["items"][0]["kind"] == "credit"
    rest = customer.get("/wallets/me/ledger", params={"cursor": first["next_cursor"]}).json()
    assert [(e["amount"], e["balance_after"]) for e in rest["items"]] == [(500, 500)]
    assert rest["next_cursor"] is None


def test_another_users_wallet_is_not_found_and_customers_may_not_write(
    customer: httpx.Client, http: httpx.Client, catalog: httpx.Client
) -> None:
    other = customer.user_id  # type: ignore[attr-defined]
    before = customer.get("/wallets/me").json()["balance"]
    assert http.get(f"/wallets/{other}").status_code == 404
    assert http.get(f"/wallets/{uuid.uuid4()}").status_code == 404
    sku = _product(catalog)
    refused = [
        http.post("/products", json={"sku": _sku(), "name": "x", "price": 1, "initial_stock": 1}),
        http.patch(f"/products/{sku}", json={"price": 1}),
        http.post(f"/products/{sku}/restock", json={"quantity": 1}),
        http.post(f"/wallets/{other}/credit", json={"amount": 1, "reason": "x"}, headers=_key()),
        catalog.post(f"/wallets/{other}/credit", json={"amount": 1, "reason": "x"}, headers=_key()),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert customer.get("/wallets/me").json()["balance"] == before
    assert http.get(f"/products/{sku}").json()["available"] == 5


BAD_RESTOCKS: list[Any] = [
    {"quantity": 0},
    {"quantity": -3},
    {"quantity": 10**6 + 1},
    {"quantity": 1.5},
    {"quantity": 2.0},
    {"quantity": "3"},
    {"quantity": True},
    {"quantity": None},
    {},
    {"quantity": 1, "available": 100},
    [1],
]
BAD_CREDITS: list[Any] = [
    {"amount": 0, "reason": "x"},
    {"amount": -100, "reason": "x"},
    {"amount": 10**12 + 1, "reason": "x"},
    {"amount": 10.5, "reason": "x"},
    {"amount": "100", "reason": "x"},
    {"amount": False, "reason": "x"},
    {"amount": 100},
    {"amount": 100, "reason": ""},
    {"amount": 100, "reason": "x", "balance": 10**9},
]
BAD_PRODUCTS: list[Any] = [
    {"sku": "has space", "name": "x", "price": 1, "initial_stock": 1},
    {"sku": "S" * 65, "name": "x", "price": 1, "initial_stock": 1},
    {"sku": "OK-1", "name": "", "price": 1, "initial_stock": 1},
    {"sku": "OK-1", "name": "x", "price": 0, "initial_stock": 1},
    {"sku": "OK-1", "name": "x", "price": "5", "initial_stock": 1},
    {"sku": "OK-1", "name": "x", "price": 5, "initial_stock": -1},
    {"sku": "OK-1", "name": "x", "price": 5, "initial_stock": 1, "currency": "EUR"},
    {"sku": "OK-1", "name": "x", "price": 5, "initial_stock": 1, "available": 9},
    {"sku": "OK-1", "name": "x", "price": 5, "initial_stock": 1, "reserved": 9},
]


@pytest.mark.parametrize("body", BAD_RESTOCKS)
def test_bad_restocks_are_422_and_change_nothing(
    catalog: httpx.Client, http: httpx.Client, body: Any
) -> None:
    sku = _product(catalog)
    answer = catalog.post(f"/products/{sku}/restock", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert answer.json()["errors"]
    assert http.get(f"/products/{sku}").json()["available"] == 5


@pytest.mark.parametrize("body", BAD_CREDITS)
def test_bad_credits_are_422_and_change_nothing(
    finance: httpx.Client, customer: httpx.Client, body: Any
) -> None:
    before = customer.get("/wallets/me").json()["balance"]
    user_id = customer.user_id  # type: ignore[attr-defined]
    answer = finance.post(f"/wallets/{user_id}/credit", json=body, headers=_key())
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert customer.get("/wallets/me").json()["balance"] == before


@pytest.mark.parametrize("body", BAD_PRODUCTS)
def test_bad_products_are_422_and_create_nothing(
    catalog: httpx.Client, http: httpx.Client, body: Any
) -> None:
    answer = catalog.post("/products", json=body)
    assert answer.status_code == 422, answer.text
    if isinstance(body.get("sku"), str) and len(body["sku"]) <= 64 and " " not in body["sku"]:
        assert http.get(f"/products/{body['sku']}").status_code == 404


def test_unknown_targets_and_malformed_keys_are_4xx_and_change_nothing(
    catalog: httpx.Client, finance: httpx.Client, customer: httpx.Client
) -> None:
    user_id = customer.user_id  # type: ignore[attr-defined]
    before = customer.get("/wallets/me").json()["balance"]
    credit = {"amount": 100, "reason": "x"}
    assert catalog.post(f"/products/{_sku()}/restock", json={"quantity": 1}).status_code == 404
    assert catalog.patch(f"/products/{_sku()}", json={"price": 5}).status_code == 404
    assert (
        finance.post(f"/wallets/{uuid.uuid4()}/credit", json=credit, headers=_key()).status_code
        == 404
    )
    assert (
        finance.post("/wallets/not-a-uuid/credit", json=credit, headers=_key()).status_code == 404
    )
    missing = finance.post(f"/wallets/{user_id}/credit", json=credit)
    assert missing.status_code == 428
    assert missing.headers["content-type"].startswith(PROBLEM)
    for bad_key in ("", "x" * 256, "tab\there", "é".encode()):
        answer = finance.post(
            f"/wallets/{user_id}/credit", json=credit, headers={"Idempotency-Key": bad_key}
        )
        assert answer.status_code in {422, 428}, (bad_key, answer.status_code)
    assert customer.get("/wallets/me").json()["balance"] == before


def test_the_same_key_and_body_answer_the_first_response_and_change_state_once(
    catalog: httpx.Client, finance: httpx.Client, customer: httpx.Client, http: httpx.Client
) -> None:
    sku = _product(catalog)
    key = _key()
    first = catalog.post(f"/products/{sku}/restock", json={"quantity": 2}, headers=key)
    second = catalog.post(f"/products/{sku}/restock", json={"quantity": 2}, headers=key)
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    assert second.headers["idempotent-replayed"] == "true"
    assert http.get(f"/products/{sku}").json()["available"] == 7
    other = catalog.post(f"/products/{sku}/restock", json={"quantity": 3}, headers=key)
    assert other.status_code == 409
    assert http.get(f"/products/{sku}").json()["available"] == 7

    user_id = customer.user_id  # type: ignore[attr-defined]
    before = customer.get("/wallets/me").json()["balance"]
    key = _key()
    body = {"amount": 250, "reason": "refund of a gift"}
    answers = [finance.post(f"/wallets/{user_id}/credit", json=body, headers=key) for _ in range(3)]
    assert {a.json()["balance"] for a in answers} == {before + 250}
    assert customer.get("/wallets/me").json()["balance"] == before + 250

    patch_key = _key()
    patched = [
        catalog.patch(f"/products/{sku}", json={"price": 4321}, headers=patch_key) for _ in range(2)
    ]
    assert patched[0].json() == patched[1].json()  # the same updated_at: one change, not two
    assert patched[1].headers["idempotent-replayed"] == "true"

    product_key = _key()
    body = {"sku": _sku(), "name": "Once", "price": 10, "initial_stock": 1}
    made = [catalog.post("/products", json=body, headers=product_key) for _ in range(2)]
    assert [m.status_code for m in made] == [201, 201]
    assert made[0].json() == made[1].json()


def test_a_refusal_is_kept_for_its_key(catalog: httpx.Client) -> None:
    key = _key()
    missing = _sku()
    first = catalog.post(f"/products/{missing}/restock", json={"quantity": 1}, headers=key)
    assert first.status_code == 404
    body = {"sku": missing, "name": "Late", "price": 10, "initial_stock": 0}
    assert catalog.post("/products", json=body).status_code == 201
    again = catalog.post(f"/products/{missing}/restock", json={"quantity": 1}, headers=key)
    assert again.status_code == 404  # the first answer, though the product exists now
    assert again.headers["idempotent-replayed"] == "true"


def _send_and_hang_up(
    settings: Settings, client: httpx.Client, path: str, body: object, key: str
) -> None:
    """Send a POST and close the connection before any of the answer is read."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {settings.http_host}:{settings.http_port}\r\n"
        f"Authorization: {client.headers['authorization']}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((settings.http_host, settings.http_port), timeout=5) as sock:
        sock.sendall(head + payload)
        sock.shutdown(socket.SHUT_RDWR)


def _retry(client: httpx.Client, path: str, body: object, key: str) -> httpx.Response:
    """The client's retry with the same key: 409 in-progress while the first is applied."""
    deadline = time.monotonic() + 20
    while True:
        answer = client.post(path, json=body, headers={"Idempotency-Key": key})
        in_progress = answer.status_code == 409 and answer.json()["type"].endswith("in-progress")
        if not in_progress or time.monotonic() > deadline:
            return answer
        time.sleep(float(answer.headers.get("retry-after", "1")))


def test_a_lost_reply_then_a_retry_with_the_same_key_applies_once(
    settings: Settings, finance: httpx.Client, customer: httpx.Client, catalog: httpx.Client
) -> None:
    user_id = customer.user_id  # type: ignore[attr-defined]
    before = customer.get("/wallets/me").json()["balance"]
    path, key = f"/wallets/{user_id}/credit", uuid.uuid4().hex
    body = {"amount": 40, "reason": "lost reply"}
    _send_and_hang_up(settings, finance, path, body, key)
    retry = _retry(finance, path, body, key)
    assert retry.status_code == 200, retry.text
    assert customer.get("/wallets/me").json()["balance"] == before + 40
    assert _retry(finance, path, body, key).json() == {"balance": before + 40}

    product = {"sku": _sku(), "name": "Lost", "price": 70, "initial_stock": 2}
    key = uuid.uuid4().hex
    _send_and_hang_up(settings, catalog, "/products", product, key)
    made = _retry(catalog, "/products", product, key)
    assert made.status_code == 201, made.text  # the first answer again, not 409 "exists"
    assert made.json()["available"] == 2

    path, key = f"/products/{_product(catalog)}/restock", uuid.uuid4().hex
    _send_and_hang_up(settings, catalog, path, {"quantity": 6}, key)
    retry = _retry(catalog, path, {"quantity": 6}, key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == {"available": 11}
