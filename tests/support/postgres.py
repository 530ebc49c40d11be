"""A throwaway local PostgreSQL cluster: temp data dir, free loopback port, removed afterwards.

Uses Debian's server binaries (`/usr/lib/postgresql/<version>/bin`), installing the `postgresql`
package with apt-get when they are missing and we are root. `initdb` refuses to run as root, so
as root every server command runs as the `postgres` system user (`runuser`), which then owns the
temp directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian_packages import AptInstallError, apt_install, can_install
from tests.support.mlflow_server import free_port

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
DATABASE_NAME = "mlflow"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL's server binaries are missing and could not be installed."""


@dataclass(frozen=True)
class PostgresCluster:
    """A running local cluster with one database for the MLflow server."""

    port: int
    directory: Path
    version: str

    @property
    def sqlalchemy_uri(self) -> str:
        """Backend store URI for `mlflow server` (psycopg2 driver, see MLFLOW_API.md)."""
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    @property
    def dsn(self) -> str:
        """libpq connection string for psycopg2."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={DATABASE_NAME}"


def find_binaries(*, install: bool = True) -> Path:
    """Return the newest `/usr/lib/postgresql/<version>/bin`, installing it if allowed.

    Raises:
        PostgresUnavailableError: Not installed, and not root or apt-get failed.
    """
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    candidates = [path for path in candidates if (path / "initdb").exists()]
    if candidates:
        return candidates[-1]
    if not install or not can_install():
        raise PostgresUnavailableError(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; install the "
            "`postgresql` package (apt-get install postgresql), or run as root so that it is "
            "installed for you"
        )
    print("installing PostgreSQL with apt-get (postgresql package) ...", flush=True)
    try:
        apt_install("postgresql")
    except AptInstallError as error:
        raise PostgresUnavailableError(str(error)) from error
    return find_binaries(install=False)


def _as_cluster_owner(command: Sequence[str]) -> list[str]:
    """Wrap a command so it runs as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *command]
    return list(command)


def _run(command: Sequence[str], *, what: str) -> None:
    result = subprocess.run(_as_cluster_owner(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@contextlib.contextmanager
def local_postgres(*, install: bool = True) -> Iterator[PostgresCluster]:
    """Run a fresh PostgreSQL cluster for the duration of the `with` block.

    The cluster listens on 127.0.0.1 only, on a free port, with its Unix socket inside the temp
    directory, `trust` authentication for local connections, and otherwise stock settings.

    Yields:
        The running cluster, with an empty database `mlflow` created.
    """
    binaries = find_binaries(install=install)
    directory = Path(tempfile.mkdtemp(prefix="postgres-"))
    data = directory / "data"
    log = directory / "postgres.log"
    if os.geteuid() == 0:
        shutil.chown(directory, user=SUPERUSER, group=SUPERUSER)
    directory.chmod(0o700)
    port = free_port()
    started = False
    try:
        _run(
            [
                str(binaries / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",  # only skips fsync of the fresh data dir; the server still syncs
            ],
            what="initdb",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
        )
        _run(
            [
                str(binaries / "pg_ctl"),
                "--pgdata",
                str(data),
                "--log",
                str(log),
                "--options",
                options,
                "--wait",
                "--timeout",
                str(START_TIMEOUT_SECONDS),
                "start",
            ],
            what="pg_ctl start",
        )
        started = True
        _create_database(binaries, port, directory)
        yield PostgresCluster(port=port, directory=directory, version=binaries.parent.name)
    finally:
        if started:
            with contextlib.suppress(RuntimeError):
                _run(
                    [str(binaries / "pg_ctl"), "--pgdata", str(data), "-m", "fast", "-w", "stop"],
                    what="pg_ctl stop",
                )
        shutil.rmtree(directory, ignore_errors=True)


def _create_database(binaries: Path, port: int, socket_directory: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            _run(
                [
                    str(binaries / "createdb"),
                    "--host",
                    str(socket_directory),
                    "--port",
                    str(port),
                    "--username",
                    SUPERUSER,
                    DATABASE_NAME,
                ],
                what="createdb",
            )
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
