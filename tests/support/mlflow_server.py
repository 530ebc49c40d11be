"""Start and stop a real `mlflow server` for the tests, the demo and the benchmarks.

The server runs from the `mlflow` executable of the current virtual environment, bound to
127.0.0.1 on a free port, with its SQLite database, artifacts, auth database and log all inside
one work directory. Artifacts are served the way a default `mlflow server` serves them: proxied
(`--serve-artifacts`), experiments rooted at `mlflow-artifacts:/<experiment_id>`, the files in
`<workdir>/artifacts` (`--artifacts-destination`), reachable through
`/api/2.0/mlflow-artifacts/artifacts`. It runs in its own session (process group) so that
`stop()` can end the CLI, the uvicorn server and anything they spawned in one go, and so that a
Ctrl-C in the terminal reaches the test runner, which then stops the server cleanly.

Startup costs 15-30 s (importing mlflow, creating the schema), so callers share one server.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

import httpx

__all__ = [
    "BASIC_AUTH_APP",
    "MlflowServer",
    "ServerOptions",
    "ServerStartError",
    "free_port",
    "live_group_members",
    "running_mlflow_server",
    "start_mlflow_server",
]

BASIC_AUTH_APP = "basic-auth"
HEALTH_POLL_INTERVAL_SECONDS = 0.25
STOP_GRACE_SECONDS = 10.0
STOP_POLL_INTERVAL_SECONDS = 0.05
LOG_TAIL_LINES = 40
ADMIN_USERNAME = "admin"
AUTH_CACHE_TTL_SECONDS = 300

# Keep the server off the network and lean on a 2-core machine: no telemetry, and no job
# runner (it forks ~8 huey consumers and leaves temp dirs in /dev/shm; traces don't need it).
_QUIET_ENV: Mapping[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PYTHONUNBUFFERED": "1",
}

_live_servers: list[MlflowServer] = []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    Returns:
        The port number. Another process may still take it before the server binds; the
        server start retries with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class MlflowServer:
    """A running `mlflow server` process and where it keeps its state.

    `artifacts_dir` is the `--artifacts-destination` directory: what the proxied artifact API
    reads and writes, so `<artifacts_dir>/<experiment_id>/traces/<trace_id>` is a trace's folder
    for every experiment rooted at `mlflow-artifacts:/` (all of them unless the server was
    started with `default_artifact_root`).
    """

    url: str
    port: int
    workdir: Path
    backend_uri: str
    db_path: Path | None
    artifacts_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    admin_username: str | None = None
    admin_password: str | None = None
    _stopped: bool = field(default=False, init=False, repr=False)

    @property
    def admin_auth(self) -> tuple[str, str] | None:
        """The admin credentials as an httpx `auth` tuple, or None without basic auth."""
        if self.admin_username is None or self.admin_password is None:
            return None
        return (self.admin_username, self.admin_password)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last `lines` lines of the server log (empty when there is no log)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, up to ~10 s of grace, then SIGKILL.

        The server itself always gets its SIGTERM and the grace to shut down cleanly.

        Safe to call more than once and after the process died on its own.
        """
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(ValueError):
            _live_servers.remove(self)
        _signal_group(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.process.poll() is None and time.monotonic() < deadline:
            # Once its server child is gone the CLI only finalizes, which takes ~5 s of
            # garbage collection for nothing: cut it short.
            if live_group_members(self.process.pid) == {self.process.pid}:
                break
            time.sleep(STOP_POLL_INTERVAL_SECONDS)
        # Ends the CLI if still there, and anything of the group that ignored SIGTERM.
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time; it has been stopped."""

    def __init__(self, server: MlflowServer, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(
            f"mlflow server on port {server.port} {reason}; last lines of {server.log_path}:\n"
            f"{server.log_tail()}"
        )


class ServerOptions(TypedDict, total=False):
    """Keyword arguments of `start_mlflow_server`, for `running_mlflow_server`."""

    backend_uri: str | None
    app_name: str | None
    extra_env: Mapping[str, str] | None
    startup_timeout: float
    workers: int
    port: int | None
    default_artifact_root: str | None
    serve_artifacts: bool


def start_mlflow_server(
    workdir: Path,
    *,
    backend_uri: str | None = None,
    app_name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    startup_timeout: float = 120.0,
    workers: int = 1,
    port: int | None = None,
    default_artifact_root: str | None = None,
    serve_artifacts: bool = True,
) -> MlflowServer:
    """Start `mlflow server` in `workdir` and wait until `GET /health` answers 200.

    Args:
        workdir: Directory for the database, artifacts, auth files and `server.log`; created
            when missing.
        backend_uri: Backend store URI; defaults to `sqlite:///{workdir}/mlflow.db`.
        app_name: `"basic-auth"` starts MLflow's basic-auth app with a fresh auth database in
            `workdir` and a random admin password (exposed on the result).
        extra_env: Environment variables for the server, applied last (they win).
        startup_timeout: Seconds to wait for the health check.
        workers: Number of uvicorn workers.
        port: Port to bind; a free one when None (retried if another process takes it first).
        default_artifact_root: `--default-artifact-root` for new experiments, e.g. a local
            path for an unproxied store (trace artifacts then bypass the artifact API). None
            keeps MLflow's default, `mlflow-artifacts:/` (proxied into `artifacts_dir`).
        serve_artifacts: False passes `--no-serve-artifacts`: the artifact API then answers
            503 ("... `--no-serve-artifacts` ..."). Give `default_artifact_root` too (e.g.
            `mlflow-artifacts:/`), or new experiments are rooted at a local path instead.

    Returns:
        The running server. Call `stop()` when done (or use `running_mlflow_server`).

    Raises:
        ServerStartError: (a RuntimeError) The server exited or did not become healthy in
            time; the message holds the end of its log. The process group is killed first.
        RuntimeError: `app_name="basic-auth"` without Flask-WTF (`mlflow[auth]`) installed.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if app_name == BASIC_AUTH_APP and importlib.util.find_spec("flask_wtf") is None:
        raise RuntimeError(
            "mlflow's basic-auth app needs Flask-WTF, which is not installed in "
            f"{sys.prefix}: install `mlflow[auth]`."
        )
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        server = _launch(
            workdir,
            port=port if port is not None else free_port(),
            backend_uri=backend_uri,
            app_name=app_name,
            extra_env=extra_env,
            workers=workers,
            default_artifact_root=default_artifact_root,
            serve_artifacts=serve_artifacts,
        )
        try:
            _wait_until_healthy(server, startup_timeout)
        except ServerStartError as error:
            lost_port_race = "address already in use" in error.server.log_tail().lower()
            if lost_port_race and attempt < attempts:
                continue
            raise
        except BaseException:  # Ctrl-C or cancellation while waiting: leave no server behind
            server.stop()
            raise
        return server
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextlib.contextmanager
def running_mlflow_server(
    workdir: Path | None = None, **options: Unpack[ServerOptions]
) -> Iterator[MlflowServer]:
    """Run an `mlflow server` for the duration of the `with` block, then stop it.

    Args:
        workdir: Work directory; a temporary one (removed afterwards) when None.
        **options: Passed to `start_mlflow_server`.

    Yields:
        The running server.
    """
    temporary_dir = None
    if workdir is None:
        temporary_dir = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
        workdir = temporary_dir
    try:
        server = start_mlflow_server(workdir, **options)
        try:
            yield server
        finally:
            server.stop()
    finally:
        if temporary_dir is not None:
            shutil.rmtree(temporary_dir, ignore_errors=True)


def _launch(
    workdir: Path,
    *,
    port: int,
    backend_uri: str | None,
    app_name: str | None,
    extra_env: Mapping[str, str] | None,
    workers: int,
    default_artifact_root: str | None,
    serve_artifacts: bool = True,
) -> MlflowServer:
    if backend_uri is None:
        backend_uri = f"sqlite:///{workdir}/mlflow.db"
    artifacts_dir = workdir / "artifacts"
    artifacts_dir.mkdir(exist_ok=True)
    command = [
        *_mlflow_command(),
        "server",
        "--backend-store-uri",
        backend_uri,
        # Absolute, since the default (./mlartifacts) depends on the server's cwd.
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = {**os.environ, **_QUIET_ENV}
    admin_username = admin_password = None
    if default_artifact_root is not None:
        command += ["--default-artifact-root", default_artifact_root]
    if not serve_artifacts:
        command.append("--no-serve-artifacts")
    if app_name is not None:
        command += ["--app-name", app_name]
    if app_name == BASIC_AUTH_APP:
        admin_username = ADMIN_USERNAME
        admin_password = secrets.token_urlsafe(18)
        env.update(_basic_auth_env(workdir, admin_username, admin_password))
    env.update(extra_env or {})
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        workdir=workdir,
        backend_uri=backend_uri,
        db_path=_sqlite_path(backend_uri, workdir),
        artifacts_dir=artifacts_dir,
        process=process,
        log_path=log_path,
        admin_username=admin_username,
        admin_password=admin_password,
    )
    _live_servers.append(server)
    return server


def _mlflow_command() -> list[str]:
    executable = Path(sys.executable).parent / "mlflow"
    if executable.exists():
        return [str(executable)]
    return [sys.executable, "-m", "mlflow"]


def _basic_auth_env(workdir: Path, username: str, password: str) -> dict[str, str]:
    """Write an auth config that keeps the auth database in `workdir`; return the env for it."""
    config_path = workdir / "basic_auth.ini"
    config_path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{workdir}/basic_auth.db\n"
        f"admin_username = {username}\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Without the cache every request re-runs PBKDF2: ~1-2 s each on a busy 2-core box.
        # One worker, so password and permission changes through the API still apply at once.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_SECONDS}\n",
        encoding="utf-8",
    )
    config_path.chmod(0o600)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config_path),
        # Set even though the file has them: a set variable overrides the file, so a stray
        # value in the caller's environment would otherwise win.
        "MLFLOW_AUTH_ADMIN_USERNAME": username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    }


def _sqlite_path(backend_uri: str, workdir: Path) -> Path | None:
    prefix = "sqlite:///"
    if not backend_uri.startswith(prefix):
        return None
    path = Path(backend_uri.removeprefix(prefix).split("?", 1)[0])
    return path if path.is_absolute() else workdir / path


def _wait_until_healthy(server: MlflowServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while True:
            if server.process.poll() is not None:
                reason = f"exited with code {server.process.returncode} during startup"
                break
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{server.url}/health").status_code == 200:
                    return
            if time.monotonic() >= deadline:
                reason = f"was not healthy after {timeout:.0f} s"
                break
            time.sleep(HEALTH_POLL_INTERVAL_SECONDS)
    server.stop()
    raise ServerStartError(server, reason)


def live_group_members(process_group: int) -> set[int] | None:
    """Return the live (non-zombie) processes of a group, or None without Linux's /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    members = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the command name (which may hold spaces): state, ppid, pgrp, ...
        state, _, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == process_group and state != "Z":
            members.add(int(entry.name))
    return members


def _signal_group(process_group: int, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process_group, signal_number)


@atexit.register
def _stop_leftover_servers() -> None:
    """Stop servers whose owner forgot to, so no `mlflow server` outlives the interpreter."""
    for server in list(_live_servers):
        server.stop()
