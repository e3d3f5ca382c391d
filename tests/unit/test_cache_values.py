from __future__ import annotations

import pytest

from serve.errors import InvalidCursorError
from serve.schemas import decode_cursor, encode_cursor
from storage.cache import CachedBody, CachePolicy


def test_cached_body_round_trips_with_a_strong_etag() -> None:
    entry = CachedBody.of(b'{"a": "line\\nbreak"}')
    assert entry.etag.startswith('"') and entry.etag.endswith('"')
    assert CachedBody.decode(entry.encode()) == entry


def test_different_bodies_have_different_etags() -> None:
    assert CachedBody.of(b"a").etag != CachedBody.of(b"b").etag


def test_ttl_jitter_stays_within_bounds() -> None:
    policy = CachePolicy(ttl_s=100, jitter=0.1)
    ttls = {policy.ttl_ms(present=True) for _ in range(200)}
    assert min(ttls) >= 90_000
    assert max(ttls) <= 110_000
    assert len(ttls) > 50


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor("SKU-9.x_y")) == "SKU-9.x_y"
    assert decode_cursor(None) is None


@pytest.mark.parametrize("bad", ["!!!", "Zm9vIGJhcg", "////"])
def test_foreign_cursors_are_refused(bad: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(bad)
