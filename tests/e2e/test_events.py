"""The event actors on the session cluster: an outbox event reaches the read model."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import ray

from actors.events.actor import RELAY_ACTOR_NAME, worker_actor_name
from cluster._events import event_status
from cluster.localstack import LocalStack
from cluster.settings import Settings
from storage.connections import ConnectionConfig, Connections
from storage.products import SqlUnitOfWorkFactory
from tests.e2e.conftest import staff_client
from tests.integration.events_helpers import append, order_event


async def _append_and_wait(stack: LocalStack, user: uuid.UUID) -> str:
    conn = Connections(ConnectionConfig(stack.database_url, stack.redis_url))
    try:
        await append(conn, [order_event("OrderPlaced", uuid.uuid4(), "PENDING", user_id=user)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with SqlUnitOfWorkFactory(conn.engine)() as uow:
                views = await uow.order_views.of_user(user, None, 10)
            if views:
                return views[0].status
            await asyncio.sleep(0.1)
        return "not projected"
    finally:
        await conn.close()


def test_event_actors_run_and_project_outbox_events(
    settings: Settings, stack: LocalStack, cluster: list[object], anon: httpx.Client
) -> None:
    groups = ("projector", "cache", "notifier")  # the session has a provider: a notifier too
    names = [RELAY_ACTOR_NAME, *(worker_actor_name(g) for g in groups)]
    infos = ray.get(
        [ray.get_actor(n, namespace=settings.namespace).info.remote() for n in names], timeout=30
    )
    assert all(i.running for i in infos)
    assert asyncio.run(_append_and_wait(stack, uuid.uuid4())) == "PENDING"
    status = event_status(settings, stack)
    assert set(status["lag"]) == set(groups)
    operator = staff_client(settings, anon, ["operator"])
    page = operator.get("/admin/dead-letters")
    assert page.status_code == 200, page.text
    assert operator.post(f"/admin/dead-letters/{uuid.uuid4()}/replay").status_code == 404
