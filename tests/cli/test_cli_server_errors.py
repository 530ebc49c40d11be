"""The CLI as a person meets a wrong server or a wrong environment: each error names the
server, the variable or flag the value came from, and the cause; exit codes as documented
(2: bad input before any request; 1: the server could not be used).

Environment mistakes run against the recording simulated server (nothing may be sent); the
server cases talk to real local sockets (a port nobody listens on, a name that does not
resolve, a plain web server answering HTML) with the engine's clock and sleep virtual, so
its retries of a failed connection cost no real time.
"""

from __future__ import annotations

from pathlib import Path

import anyio.lowlevel
import pytest

from async_trace_delete._calls import FIRST_CONTACT_SECONDS
from async_trace_delete._cli.args import run_cli
from tests.support.cli_harness import NOW_MS, Recorder, Result, cli, one_error_line, write_policy
from tests.support.mlflow_server import free_port
from tests.support.web_servers import Page, page_server

OLD = ["--older-than", "30d"]
DELETE = ["delete", "--experiment-name", "big-a", *OLD]
SERVER_SETUP = "mlflow server --backend-store-uri"


class JumpClock:
    """A clock whose sleep jumps ahead at once (the engine's backoff costs no real time)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def run_real(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    *,
    clock: JumpClock | None = None,
) -> Result:
    """The CLI against the real network, with a virtual clock."""
    clock = clock or JumpClock()
    code = run_cli(
        argv,
        environ=environ,
        wall_clock_ms=lambda: NOW_MS,
        clock=clock,
        sleep=clock.sleep,
        random=lambda: 0.5,
    )
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


# -- environment mistakes: exit 2, the variable named, nothing sent ----------------------------

STORE_CASES = [
    ("sqlite:///mlflow.db", "an SQLite database", "sqlite:///mlflow.db"),
    ("postgresql://app:pw@db.internal/mlflow", "a PostgreSQL database",
     "postgresql://***@db.internal/mlflow"),
    ("mysql+pymysql://db/mlflow", "a MySQL database", "mysql+pymysql://db/mlflow"),
    ("file:///srv/mlruns", "a local folder (a file store)", "file:///srv/mlruns"),
    ("./mlruns", "a local folder (a file store)", "./mlruns"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "store", "backend"), STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_a_store_uri_in_the_environment_names_the_variable_and_how_to_serve_it(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], uri: str, store: str, backend: str
) -> None:
    """MLFLOW_TRACKING_URI=sqlite:///mlflow.db: the variable is named (never --tracking-uri,
    which was not passed), with the command that puts a server in front of the store."""
    line = one_error_line(cli(recorder, capsys, *DELETE, env={"MLFLOW_TRACKING_URI": uri}))
    shown = backend  # the URI as given, a password replaced by ***
    assert line == (
        f"async-trace-delete: error: MLFLOW_TRACKING_URI is {shown!r}, {store}, not a server: "
        "deleting traces needs a running `mlflow server` in front of that store. Start one "
        f"with `{SERVER_SETUP} {backend} --port 5000`, then use "
        "MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
    )
    assert "--tracking-uri" not in line
    assert ":pw@" not in line
    assert recorder.requests == []


def test_a_store_uri_given_as_the_flag_names_the_flag(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same URI typed as --tracking-uri names the flag, once."""
    line = one_error_line(cli(recorder, capsys, *DELETE, "--tracking-uri", "sqlite:///m.db"))
    assert line.startswith("async-trace-delete: error: --tracking-uri is 'sqlite:///m.db', an ")
    assert line.count("--tracking-uri") == 1
    assert recorder.requests == []


def test_a_store_uri_in_a_policy_names_the_file_and_key(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A policy's tracking_uri is named as the policy's key, not as the flag or variable."""
    policy = write_policy(
        tmp_path,
        """
        tracking_uri = "sqlite:///mlflow.db"
        [[jobs]]
        experiment_ids = ["1"]
        older_than = "30d"
        """,
    )
    line = one_error_line(cli(recorder, capsys, "run", str(policy)))
    assert line.startswith(
        f"async-trace-delete: error: {policy}: tracking_uri is 'sqlite:///mlflow.db', an SQLite"
    )
    assert "--tracking-uri" not in line
    assert recorder.requests == []


@pytest.mark.parametrize("uri", ["databricks", "databricks://prod"])
def test_databricks_names_the_variable(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    """A Databricks profile URI: the variable named, and that only http(s):// is spoken."""
    line = one_error_line(cli(recorder, capsys, *DELETE, env={"MLFLOW_TRACKING_URI": uri}))
    assert line == (
        f"async-trace-delete: error: MLFLOW_TRACKING_URI is {uri!r}, a Databricks profile: "
        "this tool talks to an MLflow tracking server over http(s):// only and does not read "
        "Databricks profiles"
    )


def test_a_non_http_uri_in_the_environment_names_the_variable(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """ftp://... from the environment: the variable, once; no flag."""
    env = {"MLFLOW_TRACKING_URI": "ftp://files.internal/x"}
    line = one_error_line(cli(recorder, capsys, *DELETE, env=env))
    assert line.startswith(
        "async-trace-delete: error: MLFLOW_TRACKING_URI must be an http(s):// URL of an "
        "MLflow tracking server (got 'ftp://files.internal/x')"
    )
    assert "--tracking-uri" not in line


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "MLFLOW_HTTP_REQUEST_TIMEOUT",
            "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT: Input should be greater",
        ),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "soon", "MLFLOW_HTTP_REQUEST_TIMEOUT: expected seconds"),
        ("MLFLOW_TRACKING_INSECURE_TLS", "maybe", "MLFLOW_TRACKING_INSECURE_TLS: expected true"),
        ("MLFLOW_TRACKING_USERNAME", "bob", "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASS"),
    ],
    ids=["timeout-zero", "timeout-text", "insecure-tls", "user-alone"],
)
def test_other_mlflow_variables_are_named(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    """Each MLFLOW_* variable ClientConfig.from_env reads is named when refused, never a flag."""
    line = one_error_line(cli(recorder, capsys, *DELETE, env={variable: value}))
    assert line.startswith(f"async-trace-delete: error: {message}")
    assert "--" not in line.removeprefix("async-trace-delete: error: ").split(":")[0]
    assert recorder.requests == []


def test_a_password_in_a_store_uri_is_never_shown(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database URI with a password: the message shows ***@ instead, on every stream."""
    env = {"MLFLOW_TRACKING_URI": "postgresql://app:hunter2-secret@db/mlflow"}
    result = cli(recorder, capsys, *DELETE, env=env)
    assert result.code == 2
    assert "hunter2-secret" not in result.err + result.out
    assert "postgresql://***@db/mlflow" in result.err


# -- a server that cannot be used: exit 1, the server and the cause named ----------------------


def test_a_refused_port_names_the_server_and_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens: exit 1 within seconds of the engine's clock (a server never reached
    is not retried for progress_timeout), the URL, "connection refused" and what to check."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clock = JumpClock()
    result = run_real(capsys, DELETE, {"MLFLOW_TRACKING_URI": url}, clock=clock)
    assert result.code == 1
    assert clock.now - 1_000.0 <= FIRST_CONTACT_SECONDS + 1.0  # was 4m40s: progress_timeout
    assert f"Server: {url} (from MLFLOW_TRACKING_URI)" in result.err  # where it came from
    assert (
        f"could not connect to the MLflow server at {url}: connection refused: nothing listens "
        f"on port {port} of 127.0.0.1; is `mlflow server` running at {url}, on port {port}?"
    ) in result.err
    assert "no experiment named" not in result.err


def test_a_name_that_does_not_resolve_names_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    """An unresolvable host: exit 1, the URL and the host name that does not resolve."""
    url = "http://no-such-host.invalid:5000"
    result = run_real(
        capsys, ["delete", "--experiment-id", "1", *OLD], {"MLFLOW_TRACKING_URI": url}
    )
    assert result.code == 1
    assert f"could not connect to the MLflow server at {url}: " in result.err
    assert "'no-such-host.invalid'" in result.err


@pytest.mark.parametrize(
    ("page", "got"),
    [
        (Page(), "got 404 text/html '404 Not Found'"),
        (Page(200, "text/html", "<title>Sign in</title>"), "got 200 text/html 'Sign in'"),
        (
            Page(302, "text/html", "", {"Location": "https://sso.example.com/login"}),
            "got a 302 redirect to 'https://sso.example.com/login'",
        ),
    ],
    ids=["html-404", "login-page", "redirect"],
)
def test_a_server_that_is_not_mlflow_is_named_not_a_missing_experiment(
    capsys: pytest.CaptureFixture[str], page: Page, got: str
) -> None:
    """A plain web server, an SSO page, a redirect: exit 1 naming the server and what it
    answered; never "no experiment named 'big-a'"; one request, no delete, no retry."""
    with page_server(page) as (url, seen):
        result = run_real(capsys, [*DELETE, "--execute"], {"MLFLOW_TRACKING_URI": url})
    assert result.code == 1
    assert f"the server at {url} did not answer like an MLflow tracking server ({got}" in (
        result.err
    )
    assert "no experiment named" not in result.err
    assert seen == ["GET /api/2.0/mlflow/experiments/get-by-name?experiment_name=big-a"]
