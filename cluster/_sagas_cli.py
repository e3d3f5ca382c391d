"""``shoal sagas``: list, show, retry and abort sagas, as the operators' HTTP calls do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from cluster.localstack import LocalStack, StackError
from cluster.settings import Settings
from storage.ports import UnitOfWorkFactory

T = TypeVar("T")
sagas_app = typer.Typer(help="Inspect and repair sagas.", no_args_is_help=True)
console = Console(stderr=True)
SagaId = Annotated[str, typer.Argument(help="the saga's id")]


def read(settings: Settings, query: Callable[[UnitOfWorkFactory], Awaitable[T]]) -> T:
    """Run ``query`` on the stack's PostgreSQL with a short-lived connection."""
    from cluster import bootstrap
    from storage.connections import Connections
    from storage.products import SqlUnitOfWorkFactory

    async def run() -> T:
        conn = Connections(bootstrap.connection_config(settings, LocalStack(settings)))
        try:
            return await query(SqlUnitOfWorkFactory(conn.engine))
        finally:
            await conn.close()

    return asyncio.run(run())


def _saga_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise StackError(f"{raw!r} is not a saga id") from None


def _row(saga: Any) -> dict[str, Any]:
    steps = json.loads(saga.steps)
    return {
        "id": str(saga.id),
        "kind": saga.kind,
        "order_id": str(saga.order_id),
        "status": saga.status,
        "failure_reason": saga.failure_reason,
        "error": saga.error,
        "steps": " ".join(f"{s['name']}={s['status']}/{s['attempts']}" for s in steps),
        "updated_at": saga.updated_at.isoformat(),
    }


@sagas_app.command("list")
def sagas_list(
    status: Annotated[str | None, typer.Option(help="only sagas in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The most recently changed sagas (STUCK ones need an operator: retry or abort)."""

    async def query(uow: UnitOfWorkFactory) -> list[Any]:
        async with uow() as tx:
            return await tx.sagas.list_page(status, None, limit)

    rows = [_row(s) for s in read(Settings(), query)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ("id", "kind", "status", "failure_reason", "steps", "updated_at")
    table = Table(title="sagas")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in columns))
    Console().print(table)


@sagas_app.command("show")
def sagas_show(saga_id: SagaId) -> None:
    """One saga with its full step log, as JSON."""
    wanted = _saga_id(saga_id)

    async def query(uow: UnitOfWorkFactory) -> tuple[Any, list[Any]]:
        async with uow() as tx:
            return await tx.sagas.get(wanted), await tx.sagas.log_of(wanted)

    saga, log = read(Settings(), query)
    if saga is None:
        raise StackError(f"no saga {saga_id}")
    entries = [
        {"at": e.at.isoformat(), "step": e.step, "transition": e.transition,
         "attempt": e.attempt, "detail": e.detail}
        for e in log
    ]  # fmt: skip
    typer.echo(json.dumps({**_row(saga), "trace_id": saga.trace_id, "log": entries}, indent=2))


def _command(saga_id: str, method: str) -> None:
    import ray

    from cluster import bootstrap
    from sagas.actor import orchestrator_actor_name
    from sagas.errors import SagaStateError

    settings = Settings()
    wanted = _saga_id(saga_id)

    async def query(uow: UnitOfWorkFactory) -> Any:
        async with uow() as tx:
            return await tx.sagas.get(wanted)

    saga = read(settings, query)
    if saga is None:
        raise StackError(f"no saga {saga_id}")
    bootstrap.connect(settings, LocalStack(settings))
    owner = bootstrap.order_partitioning(settings).owner_of(str(saga.order_id))
    handle = ray.get_actor(orchestrator_actor_name(owner), namespace=settings.namespace)
    try:
        changed = ray.get(getattr(handle, method).remote(wanted), timeout=60)
    except SagaStateError as exc:
        raise StackError(f"saga {saga_id} is {exc.status}: {exc.detail}") from None
    console.print(f"saga {saga_id} is {changed.status} again")


@sagas_app.command("retry")
def sagas_retry(saga_id: SagaId) -> None:
    """Resume a STUCK saga where it stopped."""
    _command(saga_id, "retry")


@sagas_app.command("abort")
def sagas_abort(saga_id: SagaId) -> None:
    """Undo what a running or STUCK saga did, and fail its order as ``aborted``."""
    _command(saga_id, "abort")
