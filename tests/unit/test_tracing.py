from __future__ import annotations

import pytest

from serve._tracing import resolve_request_id, trace_id_from_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_valid_traceparent_gives_its_trace_id() -> None:
    assert resolve_request_id(VALID, "ignored") == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has no tail
        "garbage",
        "",
    ],
)
def test_invalid_traceparent_is_ignored(header: str) -> None:
    assert trace_id_from_traceparent(header) is None


def test_incoming_request_id_is_kept_when_well_formed() -> None:
    assert resolve_request_id(None, "abc.DEF_123-x") == "abc.DEF_123-x"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünïcode"])
def test_malformed_request_id_is_replaced_by_a_new_32_hex_id(bad: str) -> None:
    rid = resolve_request_id(None, bad)
    assert rid != bad
    assert len(rid) == 32
    int(rid, 16)


def test_new_ids_are_unique() -> None:
    assert len({resolve_request_id(None, None) for _ in range(100)}) == 100
