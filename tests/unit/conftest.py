"""Unit tests use no Ray, no network and no sleeps: starting Ray here is an error."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("unit tests must not start Ray")

    monkeypatch.setattr(ray, "init", refuse)
