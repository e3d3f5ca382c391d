"""The local stack: a private PostgreSQL, Redis and Ray head on loopback, under the state dir.

Each service is started by the machine's own binaries (``initdb``/``pg_ctl``,
``redis-server``, ``ray start``) and stopped by what started it; ``down`` kills every process
whose command line names the state directory, so nothing started by ``up`` survives it.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import redis

from cluster.settings import Settings

# Ray swaps 127.0.0.1 for the machine's routable address unless told this is no multi-node
# cluster; the local stack keeps every Ray process on loopback.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def prepare_local_driver(settings: Settings) -> None:
    """Keep this process's Ray on loopback when it drives the local stack.

    Ray reads the flag when it is imported, so call this before anything imports ``ray``.
    """
    if not settings.ray_address:
        os.environ.update(LOOPBACK_ONLY)


class StackError(RuntimeError):
    """The local stack could not be started or stopped; the message says what to do."""


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _require_free(port: int, what: str, env: str) -> None:
    if _port_in_use(port):
        raise StackError(
            f"port {port} ({what}) is already in use by another program; "
            f"stop it or choose another port with {env}"
        )


def _find_pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise StackError(f"{name} not found: install PostgreSQL (`make install` does it with apt)")


@dataclass(frozen=True)
class StackPaths:
    """Where each service keeps its files."""

    home: Path

    @property
    def pg(self) -> Path:  # noqa: D102
        return self.home / "postgres"

    @property
    def redis(self) -> Path:  # noqa: D102
        return self.home / "redis"

    @property
    def ray(self) -> Path:  # noqa: D102
        return self.home / "ray"

    @property
    def haproxy(self) -> Path:
        """HAProxy's runtime files; short, because its socket paths may be at most 97 bytes."""
        digest = hashlib.blake2b(str(self.home).encode(), digest_size=4).hexdigest()
        return Path("/tmp") / f"shoal-haproxy-{digest}"  # noqa: S108 - per-stack name

    @property
    def metrics(self) -> Path:  # noqa: D102
        return self.home / "metrics"

    @property
    def secrets(self) -> Path:  # noqa: D102
        return self.home / "secrets.json"


class _Secrets:
    """Passwords generated on first ``up`` and kept (mode 0600) for every later one."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def load(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self._path.read_text()) if self._path.exists() else {}
        wanted: dict[str, Callable[[], str]] = {
            "postgres": lambda: secrets.token_urlsafe(24),
            "redis": lambda: secrets.token_urlsafe(24),
            "auth_key": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        missing = {name: make() for name, make in wanted.items() if name not in data}
        if missing:
            data.update(missing)
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
        return data


class Postgres:
    """A private PostgreSQL cluster; as root, the server runs as an unprivileged user."""

    db_name = "shoal"
    superuser = "shoal"

    def __init__(self, settings: Settings, paths: StackPaths, password: str) -> None:
        self._s, self._paths, self._password = settings, paths, password
        self._data = paths.pg / "data"
        self._log = paths.pg / "server.log"
        self._user = self._server_user()

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the shoal database."""
        return (
            f"postgresql+psycopg://{self.superuser}:{self._password}"
            f"@127.0.0.1:{self._s.pg_port}/{self.db_name}"
        )

    @staticmethod
    def _server_user() -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise StackError("running as root and no unprivileged user (postgres) exists")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            user=self._user,
            capture_output=True,
            text=True,
            check=False,
            cwd=self._paths.pg,
        )

    def running(self) -> bool:
        """Whether the server of this data directory is up."""
        if not (self._data / "PG_VERSION").exists():
            return False
        return self._run(_find_pg_bin("pg_ctl"), "status", "-D", str(self._data)).returncode == 0

    def _prepare_dir(self) -> None:
        self._paths.pg.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        entry = pwd.getpwnam(self._user)
        for parent in self._paths.pg.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                raise StackError(
                    f"PostgreSQL runs as {self._user!r}, who cannot enter {parent}; "
                    "set SHOAL_HOME to a directory others can traverse (e.g. under /tmp)"
                )
        for path in [self._paths.pg, *self._paths.pg.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def init(self) -> None:
        """Create the cluster on first use (scram-sha-256 password auth)."""
        self._prepare_dir()
        if (self._data / "PG_VERSION").exists():
            return
        pwfile = self._paths.pg / "pwfile"
        pwfile.write_text(self._password)
        self._prepare_dir()
        try:
            done = self._run(
                _find_pg_bin("initdb"),
                "-D",
                str(self._data),
                "-U",
                self.superuser,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise StackError(f"initdb failed:\n{done.stderr.strip()}")

    def start(self) -> None:
        """Start the server on loopback only, with the connection limit from the settings."""
        _require_free(self._s.pg_port, "PostgreSQL", "SHOAL_PG_PORT")
        options = (
            f"-p {self._s.pg_port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories='' -c max_connections={self._s.pg_max_connections}"
        )
        done = self._run(
            _find_pg_bin("pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self._data),
            "-l",
            str(self._log),
            "-o",
            options,
        )
        if done.returncode != 0:
            tail = self._log.read_text()[-2000:] if self._log.exists() else done.stderr
            raise StackError(f"PostgreSQL did not start:\n{tail.strip()}")
        self._create_database()

    def _create_database(self) -> None:
        dsn = (
            f"host=127.0.0.1 port={self._s.pg_port} user={self.superuser} "
            f"password={self._password} dbname=postgres"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.db_name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.db_name}"')

    def stop(self) -> None:
        """Stop the server (fast shutdown: open transactions roll back, data stays)."""
        if self.running():
            self._run(_find_pg_bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self._data))


class Redis:
    """A private Redis with AOF persistence and a password, on loopback."""

    def __init__(self, settings: Settings, paths: StackPaths, password: str) -> None:
        self._s, self._paths, self._password = settings, paths, password
        self._pidfile = paths.redis / "redis.pid"

    @property
    def url(self) -> str:
        """``redis://`` URL with the password."""
        return f"redis://:{self._password}@127.0.0.1:{self._s.redis_port}/0"

    def _pid(self) -> int | None:
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def running(self) -> bool:
        """Whether this stack's Redis is up."""
        return self._pid() is not None

    def start(self) -> None:
        """Start ``redis-server`` daemonized with the generated config."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found: install it (`make install` does it with apt)")
        _require_free(self._s.redis_port, "Redis", "SHOAL_REDIS_PORT")
        self._paths.redis.mkdir(parents=True, exist_ok=True)
        conf = self._paths.redis / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self._s.redis_port}",
                    f"dir {self._paths.redis.resolve()}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "daemonize yes",
                    f"pidfile {self._pidfile.resolve()}",
                    f"logfile {(self._paths.redis / 'redis.log').resolve()}",
                    f"requirepass {self._password}",
                    "",
                ]
            )
        )
        conf.chmod(0o600)
        done = subprocess.run([binary, str(conf)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"redis-server did not start:\n{done.stderr.strip()}")
        _wait_for(self._answers, 60, "Redis to load its data and answer")

    def _answers(self) -> bool:
        """Whether Redis answers PING (not while it is still loading its AOF: LOADING)."""
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits."""
        pid = self._pid()
        if pid is not None:
            _terminate([psutil.Process(pid)])


class RayHead:
    """A local Ray head (with the dashboard, which Serve and the Jobs API need)."""

    def __init__(self, settings: Settings, paths: StackPaths) -> None:
        self._s, self._paths = settings, paths

    @property
    def address(self) -> str:
        """The GCS address drivers connect to."""
        return f"127.0.0.1:{self._s.ray_port}"

    def running(self) -> bool:
        """Whether a Ray head answers on this stack's port."""
        return _port_in_use(self._s.ray_port)

    def env(self) -> dict[str, str]:
        """Environment of ``ray start``: the Serve controller reads the ingress flags here."""
        env = dict(os.environ)
        haproxy = self._paths.haproxy.resolve()
        env.update(
            {
                "RAY_SERVE_ENABLE_HA_PROXY": "1" if self._s.ingress == "haproxy" else "0",
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
                "RAY_SERVE_HAPROXY_STATS_PORT": str(self._s.haproxy_stats_port),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(self._s.haproxy_metrics_port),
                **self._serve_ports(),
                "RAY_USAGE_STATS_ENABLED": "0",
                # Our request-id middleware must run before Serve's own mints another id.
                "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "serve._tracing.edge_middlewares",
                **LOOPBACK_ONLY,
            }
        )
        return env

    def _serve_ports(self) -> dict[str, str]:
        """Serve's own listening ports, from the settings, so two stacks can share a machine."""
        s = self._s
        return {
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(s.serve_fallback_port),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(s.serve_fallback_port + 1000),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(s.replica_port_min),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(s.replica_port_min + s.replica_port_span),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(s.replica_port_min + 10000),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(
                s.replica_port_min + 10000 + s.replica_port_span
            ),
        }

    def start(self) -> None:
        """``ray start --head`` on loopback with this stack's ports and temp dir."""
        for port, what, env in (
            (self._s.ray_port, "Ray GCS", "SHOAL_RAY_PORT"),
            (self._s.dashboard_port, "Ray dashboard", "SHOAL_DASHBOARD_PORT"),
            (self._s.http_port, "HTTP", "SHOAL_HTTP_PORT"),
        ):
            _require_free(port, what, env)
        self._paths.haproxy.mkdir(parents=True, exist_ok=True)
        ray_bin = str(Path(sys.executable).with_name("ray"))
        args = [
            ray_bin,
            "start",
            "--head",
            f"--port={self._s.ray_port}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self._s.dashboard_port}",
            "--include-dashboard=true",
            f"--dashboard-agent-listen-port={self._s.ray_port + 1}",
            f"--ray-client-server-port={self._s.ray_port + 2}",
            f"--temp-dir={self._paths.ray.resolve()}",
            "--disable-usage-stats",
        ]
        if self._s.ray_num_cpus is not None:
            args.append(f"--num-cpus={self._s.ray_num_cpus}")
        done = subprocess.run(args, env=self.env(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"ray start failed:\n{done.stderr.strip()[-3000:]}")

    def stop(self) -> None:
        """Kill every process that names this stack's directories, and their children.

        ``ray stop`` would stop every Ray cluster of this user, and misses the HAProxy that
        Serve started; matching on our own paths stops exactly what this stack started.
        """
        marks = (
            str(self._paths.ray.resolve()),
            str(self._paths.haproxy.resolve()),
            f"--address={self.address}",  # the Ray client server names only the GCS
        )
        roots = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(proc.info["cmdline"] or ())
                if proc.pid != os.getpid() and any(m in cmdline for m in marks):
                    roots.append(proc)
        everything: dict[int, psutil.Process] = {}
        for proc in roots:
            everything[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    everything[child.pid] = child
        everything.pop(os.getpid(), None)
        _terminate(list(everything.values()))


def _terminate(procs: list[psutil.Process], grace_s: float = 10.0) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class LocalStack:
    """PostgreSQL, Redis and Ray for one state directory; external ones when configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = StackPaths(settings.home.resolve())
        generated = _Secrets(self.paths.secrets).load()
        self.postgres = Postgres(settings, self.paths, generated["postgres"])
        self.redis = Redis(settings, self.paths, generated["redis"])
        self._local_auth_key = generated["auth_key"]
        self.ray = RayHead(settings, self.paths)

    @property
    def database_url(self) -> str:
        """The configured PostgreSQL, else the private one."""
        return self.settings.database_url or self.postgres.url

    def auth_keys(self) -> tuple[dict[str, str], str]:
        """The configured secret-sealing keys and current key id, else the stack's own."""
        if self.settings.auth_secret_keys:
            keys = dict(self.settings.auth_secret_keys)
            current = self.settings.auth_current_key or sorted(keys)[-1]
            if current not in keys:
                raise StackError(
                    f"SHOAL_AUTH_CURRENT_KEY {current!r} is not in SHOAL_AUTH_SECRET_KEYS"
                )
            return keys, current
        return {"local-1": self._local_auth_key}, "local-1"

    @property
    def redis_url(self) -> str:
        """The configured Redis, else the private one."""
        return self.settings.redis_url or self.redis.url

    @property
    def ray_address(self) -> str:
        """The configured Ray cluster, else the local head."""
        return self.settings.ray_address or self.ray.address

    def running(self) -> dict[str, bool]:
        """Which of the services this stack manages are up (external ones are not listed)."""
        state = {}
        if not self.settings.database_url:
            state["postgres"] = self.postgres.running()
        if not self.settings.redis_url:
            state["redis"] = self.redis.running()
        if not self.settings.ray_address:
            state["ray"] = self.ray.running()
        return state

    def start_data(self) -> None:
        """Start PostgreSQL and Redis where they are ours and not yet running."""
        self.paths.home.mkdir(parents=True, exist_ok=True)
        self.paths.home.chmod(0o711)
        if not self.settings.database_url and not self.postgres.running():
            self.postgres.init()
            self.postgres.start()
        if not self.settings.redis_url and not self.redis.running():
            self.redis.start()

    def start_ray(self) -> None:
        """Start the Ray head where it is ours and not yet running (with a fresh metrics dir)."""
        if self.settings.ray_address or self.ray.running():
            self.paths.metrics.mkdir(parents=True, exist_ok=True)
            return
        shutil.rmtree(self.paths.metrics, ignore_errors=True)
        self.paths.metrics.mkdir(parents=True, exist_ok=True)
        self.ray.start()

    def stop(self, purge: bool = False) -> None:
        """Stop what this stack started; with ``purge`` delete the state directory too."""
        if not self.settings.ray_address:
            self.ray.stop()
        if not self.settings.redis_url:
            self.redis.stop()
        if not self.settings.database_url:
            self.postgres.stop()
        shutil.rmtree(self.paths.haproxy, ignore_errors=True)
        if purge:
            shutil.rmtree(self.paths.home, ignore_errors=True)
