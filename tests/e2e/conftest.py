from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from cluster.settings import Settings


@pytest.fixture(scope="session")
def http(settings: Settings, cluster: list[object]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=settings.base_url, timeout=30) as client:
        yield client


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, from /metrics."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total
