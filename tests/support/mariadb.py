"""A throwaway local MariaDB server: temp data dir, free loopback port, removed afterwards.

Uses Debian's `mariadb-server` package (`/usr/sbin/mariadbd`, `mariadb-install-db`), installing
it with apt-get when it is missing and we are root. As root every server command runs as the
`mysql` system user (`runuser`), which then owns the temp directory. The server reads no option
file (`--no-defaults`), listens on 127.0.0.1 only, keeps its socket, pid file and error log in
the temp directory, and otherwise runs with stock settings (InnoDB, `sql_mode` as shipped).

MLflow connects as a user `mlflow`@`127.0.0.1` (no password: loopback, throwaway) that owns the
database `mlflow` (utf8mb4, the server's default collation), as an application user on a
production server would; `root` is kept for the socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pymysql.connections

from tests.support.debian_packages import AptInstallError, apt_install, can_install
from tests.support.mlflow_server import free_port, live_group_members

__all__ = ["MariadbServer", "MariadbUnavailableError", "find_binaries", "local_mariadb"]

DATABASE_NAME = "mlflow"
APPLICATION_USER = "mlflow"
SYSTEM_USER = "mysql"
SERVER_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
INSTALL_DB_CANDIDATES = ("mariadb-install-db", "mysql_install_db")
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.2
LOG_TAIL_CHARACTERS = 3000


class MariadbUnavailableError(RuntimeError):
    """MariaDB's server is missing and could not be installed, or it did not start."""


@dataclass(frozen=True)
class MariadbBinaries:
    """Where the server and its data-directory initializer are."""

    server: Path
    install_db: Path


@dataclass(frozen=True)
class MariadbServer:
    """A running local MariaDB server with one database for the MLflow server."""

    port: int
    directory: Path
    version: str

    @property
    def socket_path(self) -> Path:
        """The server's Unix socket (root connects through it)."""
        return self.directory / "mariadbd.sock"

    @property
    def sqlalchemy_uri(self) -> str:
        """Backend store URI for `mlflow server` (PyMySQL driver, over TCP)."""
        return f"mysql+pymysql://{APPLICATION_USER}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def connect(self) -> pymysql.connections.Connection:
        """A new connection as the application user to database `mlflow`, autocommit off."""
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=APPLICATION_USER,
            database=DATABASE_NAME,
            charset="utf8mb4",
            autocommit=False,
        )


def find_binaries(*, install: bool = True) -> MariadbBinaries:
    """Return Debian's MariaDB server binaries, installing `mariadb-server` if allowed.

    Raises:
        MariadbUnavailableError: Not installed, and not root or apt-get failed.
    """
    server = next((Path(path) for path in SERVER_CANDIDATES if Path(path).exists()), None)
    install_db = next(
        (Path(found) for name in INSTALL_DB_CANDIDATES if (found := shutil.which(name))), None
    )
    if server is not None and install_db is not None:
        return MariadbBinaries(server=server, install_db=install_db)
    if not install or not can_install():
        raise MariadbUnavailableError(
            "MariaDB server not found (/usr/sbin/mariadbd, mariadb-install-db); install the "
            "`mariadb-server` package (apt-get install mariadb-server), or run as root so "
            "that it is installed for you"
        )
    print("installing MariaDB with apt-get (mariadb-server package) ...", flush=True)
    try:
        apt_install("mariadb-server")
    except AptInstallError as error:
        raise MariadbUnavailableError(str(error)) from error
    return find_binaries(install=False)


@contextlib.contextmanager
def local_mariadb(*, install: bool = True) -> Iterator[MariadbServer]:
    """Run a fresh MariaDB server for the duration of the `with` block, then remove it.

    Yields:
        The running server, with an empty database `mlflow` its application user owns.

    Raises:
        MariadbUnavailableError: The server is missing and could not be installed, or the
            data directory could not be initialized, or the server did not accept
            connections in time (the message holds the end of its error log).
    """
    binaries = find_binaries(install=install)
    directory = Path(tempfile.mkdtemp(prefix="mariadb-"))
    data = directory / "data"
    error_log = directory / "error.log"
    socket_path = directory / "mariadbd.sock"
    if os.geteuid() == 0:
        shutil.chown(directory, user=SYSTEM_USER, group=SYSTEM_USER)
    directory.chmod(0o700)
    process: subprocess.Popen[bytes] | None = None
    try:
        _initialize(binaries, data)
        port = free_port()
        process = subprocess.Popen(
            _as_system_user(
                [
                    str(binaries.server),
                    "--no-defaults",  # first: no /etc/mysql option files
                    f"--datadir={data}",
                    f"--socket={socket_path}",
                    f"--pid-file={directory / 'mariadbd.pid'}",
                    f"--log-error={error_log}",
                    "--bind-address=127.0.0.1",
                    f"--port={port}",
                    "--skip-name-resolve",  # the grants name 127.0.0.1; no DNS on connect
                ]
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        version = _create_database(process, socket_path, error_log)
        yield MariadbServer(port=port, directory=directory, version=version)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _as_system_user(command: Sequence[str]) -> list[str]:
    """Wrap a command so it runs as the `mysql` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SYSTEM_USER, "--", *command]
    return list(command)


def _initialize(binaries: MariadbBinaries, data: Path) -> None:
    command = [
        str(binaries.install_db),
        "--no-defaults",
        f"--datadir={data}",
        "--auth-root-authentication-method=normal",  # root@localhost, no password, by socket
        "--skip-test-db",
        "--skip-name-resolve",
    ]
    result = subprocess.run(_as_system_user(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MariadbUnavailableError(
            f"{binaries.install_db.name} failed ({result.returncode}):\n"
            f"{result.stdout[-LOG_TAIL_CHARACTERS:]}{result.stderr[-LOG_TAIL_CHARACTERS:]}"
        )


def _create_database(process: subprocess.Popen[bytes], socket_path: Path, error_log: Path) -> str:
    """Wait for the server, create the database and its user; return the server's version."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise MariadbUnavailableError(
                f"mariadbd exited with code {process.returncode} during startup:\n"
                f"{_tail(error_log)}"
            )
        if not _accepts_connections(socket_path):
            if time.monotonic() > deadline:
                raise MariadbUnavailableError(
                    f"mariadbd did not accept connections within {START_TIMEOUT_SECONDS:.0f} s:"
                    f"\n{_tail(error_log)}"
                )
            time.sleep(POLL_INTERVAL_SECONDS)
            continue
        connection = pymysql.connect(unix_socket=str(socket_path), user="root")
        with contextlib.closing(connection), connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE_NAME} CHARACTER SET utf8mb4")
            cursor.execute(f"CREATE USER '{APPLICATION_USER}'@'127.0.0.1'")
            cursor.execute(
                f"GRANT ALL PRIVILEGES ON {DATABASE_NAME}.* TO '{APPLICATION_USER}'@'127.0.0.1'"
            )
            cursor.execute("SELECT VERSION()")
            row = cursor.fetchone()
        assert row is not None
        return str(row[0])


def _accepts_connections(socket_path: Path) -> bool:
    """Whether the server listens on its socket (probed with a plain socket: a failed
    PyMySQL connect leaves its socket to the garbage collector, a ResourceWarning)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (a clean InnoDB shutdown), SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # runuser may exit before its child: wait for the group itself to be gone.
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while live_group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARACTERS:]
    except FileNotFoundError:
        return "(no error log)"
