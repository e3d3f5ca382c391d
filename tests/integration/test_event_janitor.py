# ruff: noqa: E501
"""Retention on real PostgreSQL: trims what every group recorded, keeps what it must."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from storage.connections import Connections
from storage.janitor import Retention, RetentionJanitor
from storage.streams import EventStreams
from tests.integration.events_helpers import PARTITIONS, reset_bus, scalar

OLD = "now() - interval '10 days'"


async def test_janitor_trims_what_it_should_and_keeps_what_it_must(
    isolated: Connections,
) -> None:
    await reset_bus(isolated)
    user, order = uuid.uuid4(), uuid.uuid4()
    done, pending = uuid.uuid4(), uuid.uuid4()
    finished, running = uuid.uuid4(), uuid.uuid4()
    old_key, new_key = f"old-{uuid.uuid4()}", f"new-{uuid.uuid4()}"
    statements = [
        f"INSERT INTO users (id, email, password_hash, roles) VALUES ('{user}', '{user}@x.io', 'h', '{{}}')",
        f"INSERT INTO orders (id, user_id, status, items, total, currency, trace_id) VALUES ('{order}', '{user}', 'CONFIRMED', '[]', 0, 'USD', 't')",
        *(
            f"INSERT INTO outbox (id, type, aggregate_id, trace_id, payload, created_at, published_at) VALUES ('{e}', 'OrderPlaced', 'a', 't', '{{}}', {OLD}, {OLD})"
            for e in (done, pending)
        ),
        *(
            f"INSERT INTO inbox (consumer, event_id, handled_at) VALUES ('{g}', '{done}', {OLD})"
            for g in ("ja", "jb")
        ),
        f"INSERT INTO inbox (consumer, event_id, handled_at) VALUES ('ja', '{pending}', {OLD})",
        *(
            f"INSERT INTO sagas (id, kind, order_id, partition, status, steps, data, trace_id, deadline, updated_at) VALUES ('{s}', 'place_order', '{order}', 0, '{st}', '[]', '{{}}', 't', now(), {OLD})"
            for s, st in ((finished, "COMPLETED"), (running, "RUNNING"))
        ),
        *(
            f"INSERT INTO saga_log (saga_id, step, transition, attempt, trace_id, at) VALUES ('{s}', 'reserve', 'started', 1, 't', {OLD})"
            for s in (finished, running)
        ),
        f"INSERT INTO operations (key, fingerprint, outcome, created_at) VALUES ('{old_key}', 'f', 'o', {OLD})",
        f"INSERT INTO operations (key, fingerprint, outcome) VALUES ('{new_key}', 'f', 'o')",
    ]  # fmt: skip
    async with isolated.engine.begin() as c:
        for statement in statements:
            await c.execute(text(statement))
    janitor = RetentionJanitor(
        isolated.engine,
        EventStreams(isolated.redis, PARTITIONS),
        ["ja", "jb"],
        Retention(retention_s=86400, idempotency_retention_s=86400, batch=1),
    )
    removed = await janitor.run_once()
    assert removed["outbox"] == 1 and removed["sagas"] == 1

    async def count(sql: str) -> int:
        return await scalar(isolated, sql)

    assert await count(f"SELECT count(*) FROM outbox WHERE id = '{pending}'") == 1
    assert await count(f"SELECT count(*) FROM outbox WHERE id = '{done}'") == 0
    assert await count(f"SELECT count(*) FROM inbox WHERE event_id = '{done}'") == 0
    assert await count(f"SELECT count(*) FROM inbox WHERE event_id = '{pending}'") == 1
    assert await count(f"SELECT count(*) FROM sagas WHERE id = '{running}'") == 1
    assert await count(f"SELECT count(*) FROM saga_log WHERE saga_id = '{running}'") == 1
    assert await count(f"SELECT count(*) FROM saga_log WHERE saga_id = '{finished}'") == 0
    assert await count(f"SELECT count(*) FROM orders WHERE id = '{order}'") == 1
    assert await count(f"SELECT count(*) FROM operations WHERE key = '{old_key}'") == 0
    assert await count(f"SELECT count(*) FROM operations WHERE key = '{new_key}'") == 1
