"""The ``shoal`` command: start, stop and inspect the stack."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from cluster._sagas_cli import read, sagas_app
from cluster.localstack import LocalStack, StackError, prepare_local_driver
from cluster.settings import Settings
from storage.ports import UnitOfWorkFactory

app = typer.Typer(
    help="shoal: an actor-based distributed worker system on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


_REMEMBERED = "cli-options.json"
PemFile = typer.Option(exists=True, dir_okay=False, readable=True, resolve_path=True)


def _settings(**given: object) -> Settings:
    """Settings from the environment, with what ``up`` was given on its command line.

    ``up --tls-cert/--tls-key`` are remembered in the state directory, so ``status``,
    ``down`` and the next ``up`` talk to the stack the way it was started.
    """
    from_env = Settings()
    path = from_env.home / _REMEMBERED
    remembered = json.loads(path.read_text()) if path.exists() else {}
    chosen = {k: str(v) for k, v in given.items() if v is not None}
    merged = {**remembered, **chosen}
    settings = Settings(**merged) if merged else from_env
    if chosen:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged))
    return settings


def _ready(settings: Settings) -> bool:
    try:
        response = httpx.get(
            f"{settings.base_url}/readyz", timeout=3, verify=settings.http_verify()
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="add sample products")] = False,
    tls_cert: Annotated[Path | None, PemFile] = None,
    tls_key: Annotated[Path | None, PemFile] = None,
) -> None:
    """Start the local stack, return when /readyz is green, print the URL.

    With --tls-cert and --tls-key the API is served over HTTPS (by Serve's Python proxy).
    """
    from cluster import bootstrap
    from cluster.demo import demo_products

    tls = {"tls_cert": tls_cert, "tls_key": tls_key, "ingress": "proxy"} if tls_cert else {}
    settings = _settings(**tls)
    stack = LocalStack(settings)
    if all(stack.running().values()) and _ready(settings):
        console.print(f"shoal is already running at {settings.base_url}; nothing changed")
        if settings.admin_email is not None:
            bootstrap.connect(settings, stack)
            _ensure_admin(settings)
        if demo:
            bootstrap.connect(settings, stack)
            handles = bootstrap.start_actors(settings, stack)
            bootstrap.seed_products(settings, handles, demo_products(settings.currency))
        typer.echo(settings.base_url)
        return
    with console.status("starting PostgreSQL and Redis") as status:
        stack.start_data()
        status.update("migrating the database")
        bootstrap.migrate_database(stack)
        status.update("starting Ray")
        stack.start_ray()
        bootstrap.connect(settings, stack)
        status.update("starting the actors")
        handles = bootstrap.start_actors(settings, stack)
        _ensure_admin(settings)
        status.update("deploying the gateway")
        bootstrap.deploy_gateway(settings, stack)
        status.update("waiting for /readyz")
        bootstrap.wait_ready(settings)
        if demo:
            status.update("adding demo products")
            count = bootstrap.seed_products(settings, handles, demo_products(settings.currency))
            console.print(f"demo: {count} products")
    console.print(f"shoal is ready at {settings.base_url}")
    typer.echo(settings.base_url)


@app.command()
def down(
    purge: Annotated[bool, typer.Option(help="also delete the state directory")] = False,
) -> None:
    """Stop everything `up` started; data stays unless --purge."""
    settings = _settings()
    with console.status("stopping"):
        LocalStack(settings).stop(purge=purge)
    console.print("shoal stopped" + (" and its state deleted" if purge else ""))


def _collect_status(settings: Settings, stack: LocalStack) -> dict[str, Any]:
    import ray
    from ray import serve

    from cluster import bootstrap
    from storage.telemetry import cache_hit_ratios

    running = stack.running()
    report: dict[str, Any] = {
        "url": settings.base_url,
        "services": running,
        "ready": _ready(settings),
    }
    if running.get("ray", True):
        bootstrap.connect(settings, stack)
        report["nodes"] = [
            {
                "id": n["NodeID"][:12],
                "alive": n["Alive"],
                "address": n["NodeManagerAddress"],
                "cpus": n["Resources"].get("CPU", 0),
            }
            for n in ray.nodes()  # type: ignore[no-untyped-call]
        ]
        apps = serve.status().applications
        report["deployments"] = {
            f"{name}/{dname}": {"status": str(d.status.value), "replicas": d.replica_states}
            for name, a in apps.items()
            for dname, d in a.deployments.items()
        }
        names = [
            s.name(i) for s in bootstrap.shard_sets(settings, stack) for i in range(s.layout.shards)
        ]
        handles = [ray.get_actor(n, namespace=settings.namespace) for n in names]
        report["shards"] = [asdict(i) for i in bootstrap.shard_infos(handles, 15)]
    if running.get("postgres", True):
        report["sagas"] = read(settings, _saga_counts)
    if running.get("postgres", True) and running.get("redis", True):
        from cluster._events import event_status

        report["events"] = event_status(settings, stack)
    report["cache_hit_ratio"] = cache_hit_ratios(stack.paths.metrics)
    return report


async def _saga_counts(uow: UnitOfWorkFactory) -> dict[str, int]:
    async with uow() as tx:
        return await tx.sagas.count_by_status()


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Nodes, deployments, replicas, shards (with pids), sagas, events, cache hit ratio."""
    settings = _settings()
    report = _collect_status(settings, LocalStack(settings))
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    out = Console()
    out.print(f"[bold]{report['url']}[/] ready={report['ready']} services={report['services']}")
    for title, rows in (("nodes", report.get("nodes", [])), ("shards", report.get("shards", []))):
        if rows:
            table = Table(title=title)
            for col in rows[0]:
                table.add_column(col)
            for row in rows:
                table.add_row(*(str(v) for v in row.values()))
            out.print(table)
    for name, dep in report.get("deployments", {}).items():
        out.print(f"deployment {name}: {dep['status']} replicas={dep['replicas']}")
    out.print(f"sagas by status: {report.get('sagas', {})}")
    out.print(f"cache hit ratio: {report['cache_hit_ratio']}")
    if "events" in report:
        events = report["events"]
        out.print(f"event lag: {events['lag']} dead letters: {events['dead_letters']}")


users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage the keys that sign access tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(sagas_app, name="sagas")
Email = Annotated[str, typer.Option("--email", help="the user's email")]


def _ensure_admin(settings: Settings) -> None:
    from actors.auth.errors import AuthError
    from cluster import bootstrap

    try:
        email = bootstrap.ensure_admin(settings)
    except AuthError as exc:
        raise StackError(f"admin user {settings.admin_email}: {_explain(exc)}") from None
    if email is not None:
        console.print(f"admin user {email} is ready")


def _explain(exc: BaseException) -> str:
    from actors.auth.errors import (
        EmailTakenError,
        InvalidInputError,
        TooManyAttemptsError,
        UnknownUserError,
    )

    if isinstance(exc, InvalidInputError):
        return f"{exc.field}: {exc.message}"
    if isinstance(exc, EmailTakenError):
        return "a user with this email exists already"
    if isinstance(exc, UnknownUserError):
        return f"no user {exc.user!r}"
    if isinstance(exc, TooManyAttemptsError):
        return str(exc)
    return type(exc).__name__


def _call_auth(method: str, *args: object) -> Any:
    """Call the running stack's auth actor; auth refusals become a clear error line."""
    import uuid

    import ray

    from actors.auth.errors import AuthError
    from cluster import bootstrap

    settings = _settings()
    bootstrap.connect(settings, LocalStack(settings))
    handle = bootstrap.auth_actor(settings)
    try:
        return ray.get(getattr(handle, method).remote(*args, uuid.uuid4().hex), timeout=60)
    except AuthError as exc:
        raise StackError(_explain(exc)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def users_create(
    email: Email,
    role: Annotated[list[str], typer.Option("--role", help="a role to give (repeat for several)")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from one line of stdin")
    ] = False,
) -> None:
    """Create a user with the given roles (the password is asked for, hidden)."""
    password = _read_password(password_stdin)
    user = _call_auth("create_user", email, password, list(role))
    console.print(f"created {user.email} with roles {', '.join(user.roles)}")
    typer.echo(str(user.id))


@users_app.command("grant")
def users_grant(
    email: Email, role: Annotated[str, typer.Option("--role", help="the role to add")]
) -> None:
    """Add a role to a user; it applies to the user's next request."""
    user = _call_auth("grant_role", email, role)
    console.print(f"{user.email} now has roles {', '.join(user.roles)}")


@users_app.command("disable")
def users_disable(email: Email) -> None:
    """Refuse the user's logins and revoke every session of theirs."""
    _call_auth("disable_user_by_email", email)
    console.print(f"{email} is disabled and its sessions are revoked")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Sign with a new key; tokens signed with the previous one stay valid until they expire."""
    kid = _call_auth("rotate_key")
    console.print("new signing key; tokens signed before stay valid until they expire")
    typer.echo(kid)


def main() -> None:
    """Entry point: turn stack and settings errors into clear lines and exit status 1."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        prepare_local_driver(Settings())
        app()
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            console.print(f"[red]error:[/] {where}: {err['msg']}")
        sys.exit(1)
