"""The gateway over HTTP on a real Ray cluster: health, errors, tracing, metrics."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import metric

PROBLEM_KEYS = {"type", "title", "status", "detail", "trace_id"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["trace_id"] == response.headers["x-request-id"]
    text = response.text.lower()
    assert "traceback" not in text and "sqlalchemy" not in text and "ray" not in text
    return body


def test_healthz_answers_without_dependencies(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_every_dependency(http: httpx.Client) -> None:
    response = http.get("/readyz")
    assert response.status_code == 200
    checks = {"postgres": "ok", "redis": "ok", "actors": "ok", "bus": "ok"}
    assert response.json()["checks"] == checks


def test_openapi_and_docs_are_served(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {"/products", "/products/{sku}", "/readyz"} <= set(spec["paths"])
    assert http.get("/docs").status_code == 200


def test_unknown_route_is_a_404_problem(http: httpx.Client) -> None:
    assert_problem(http.get("/no/such/route"), 404)


def test_wrong_method_is_a_405_problem(http: httpx.Client) -> None:
    response = http.delete("/products")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    body = b"{" + b" " * (70 * 1024) + b"}"
    response = http.post("/products", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 413)


def test_body_of_another_media_type_is_415(http: httpx.Client) -> None:
    response = http.post("/products", content=b"sku=1", headers={"content-type": "text/plain"})
    assert_problem(response, 415)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/products?limit=0", "query.limit"),
        ("/products?limit=101", "query.limit"),
        ("/products?limit=abc", "query.limit"),
        ("/products?cursor=%21%21", "cursor"),
        ("/products/bad%20sku", "path.sku"),
        ("/products/" + "x" * 65, "path.sku"),
    ],
)
def test_invalid_input_is_a_422_with_the_field(http: httpx.Client, path: str, field: str) -> None:
    body = assert_problem(http.get(path), 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert field in {e["field"] for e in errors}


def test_every_response_carries_exactly_one_request_id(http: httpx.Client) -> None:
    for path in ("/healthz", "/products", "/nope"):
        response = http.get(path)
        assert len(response.headers.get_list("x-request-id")) == 1


def test_traceparent_trace_id_becomes_the_request_id(http: httpx.Client) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = http.get("/nope", headers={"traceparent": traceparent, "x-request-id": "other"})
    assert response.headers.get_list("x-request-id") == ["4bf92f3577b34da6a3ce929d0e0e4736"]
    assert response.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_well_formed_request_id_is_kept_and_malformed_replaced(http: httpx.Client) -> None:
    kept = http.get("/healthz", headers={"x-request-id": "client.id-42"})
    assert kept.headers.get_list("x-request-id") == ["client.id-42"]
    replaced = http.get("/healthz", headers={"x-request-id": "bad id;drop"})
    rid = replaced.headers["x-request-id"]
    assert rid != "bad id;drop"
    assert len(rid) == 32


def test_metrics_cover_requests_of_every_process(http: httpx.Client) -> None:
    before = metric(http, "shoal_http_requests_total", route="/healthz", status="200")
    for _ in range(5):
        http.get("/healthz")
    after = metric(http, "shoal_http_requests_total", route="/healthz", status="200")
    assert after >= before + 5
    # Shard actors run in their own processes; their calls show in the same scrape.
    assert metric(http, "shoal_actor_calls_total", actor="inventory", method="info") > 0


def test_replicas_and_shards_reserve_no_whole_cpu(http: httpx.Client) -> None:
    import ray

    reserved = ray.cluster_resources()["CPU"] - ray.available_resources().get("CPU", 0)
    assert reserved < 1


def test_security_headers_and_no_cors_by_default(http: httpx.Client) -> None:
    response = http.get("/products", headers={"origin": "https://evil.example"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in response.headers
    preflight = http.options(
        "/products",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
