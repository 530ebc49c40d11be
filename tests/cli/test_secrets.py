"""Secrets stay secret, and TLS is verified unless the user says otherwise.

The engine and the CLI run with a token or a password set, through retries, lost answers and
failures, and everything they produce is collected — log records at DEBUG, event reprs,
report JSON, exception texts and reprs, the CLI's stdout, stderr and audit log — and searched
for the secret (raw, and as the Basic ``Authorization`` value).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import secrets
import ssl
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from async_trace_delete import (
    ClientConfig,
    ConnectError,
    DeleteSpec,
    Engine,
    EngineConfig,
    Event,
    LoggingHook,
    SpecError,
    TracesClient,
)
from async_trace_delete._cli.args import run_cli
from tests.support.simulated_server import (
    BASE_MS,
    SIM_URL,
    Fault,
    LatencyModel,
    SimulatedServer,
    sim_traces,
)

NOW_MS = BASE_MS + 30 * 86_400_000
CUTOFF = BASE_MS + 199  # 200 old traces, 20 new


@dataclass(frozen=True)
class Credentials:
    """One way to authenticate, and every form its secret could leak in."""

    scheme: str
    username: str | None
    secret: str

    @property
    def forms(self) -> tuple[str, ...]:
        """The secret itself and, for Basic auth, the encoded header value."""
        if self.username is None:
            return (self.secret,)
        pair = f"{self.username}:{self.secret}".encode()
        return (self.secret, base64.b64encode(pair).decode("ascii"))

    def client_config(self, url: str = SIM_URL) -> ClientConfig:
        """Connection settings carrying the secret."""
        if self.username is None:
            return ClientConfig(tracking_uri=url, token=self.secret)
        return ClientConfig(tracking_uri=url, username=self.username, password=self.secret)

    def environ(self) -> dict[str, str]:
        """MLflow's environment variables carrying the secret."""
        env = {"MLFLOW_TRACKING_URI": SIM_URL}
        if self.username is None:
            env["MLFLOW_TRACKING_TOKEN"] = self.secret
        else:
            env["MLFLOW_TRACKING_USERNAME"] = self.username
            env["MLFLOW_TRACKING_PASSWORD"] = self.secret
        return env


@pytest.fixture(params=["bearer", "basic"])
def credentials(request: pytest.FixtureRequest) -> Credentials:
    """A fresh random token or password."""
    secret = "s3cr3t-" + secrets.token_urlsafe(18)
    if request.param == "bearer":
        return Credentials("bearer", None, secret)
    return Credentials("basic", "alice", secret)


def assert_nowhere(credentials: Credentials, outputs: dict[str, str]) -> None:
    """No output contains any form of the secret; name the outputs that do."""
    leaks = [name for name, text in outputs.items() for form in credentials.forms if form in text]
    assert leaks == [], f"the secret leaked into: {leaks}"
    assert sum(len(text) for text in outputs.values()) > 0


def exception_text(error: BaseException) -> str:
    """str, repr and the full traceback (with causes and contexts) of an exception."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def world() -> tuple[SimulatedServer, str]:
    """A simulated server with one experiment: 200 traces up to CUTOFF and 20 after it."""
    server = SimulatedServer(latency=LatencyModel(fixed=0.3, per_trace=1e-4))
    return server, server.add_experiment("secrets", sim_traces(220))


def failing_schedule() -> list[Fault | None]:
    """Retries, a lost answer, then a permission error that fails the job."""
    return [
        Fault(status=503, message="(sqlite3.OperationalError) database is locked"),
        Fault(status=429, error_code="REQUEST_LIMIT_EXCEEDED", headers={"Retry-After": "1"}),
        Fault(raise_error=httpx.ReadTimeout, apply_first=True),
        Fault(raise_error=httpx.RemoteProtocolError),
        None,
        Fault(status=403, text="Permission denied"),
    ]


# -- the library -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_engine_output_never_contains_the_secret(
    credentials: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs, events, reports, reprs and errors of a run through faults never show the secret."""
    caplog.set_level(logging.DEBUG)
    server, experiment_id = world()
    server.script(*failing_schedule())
    events: list[Event] = []
    config = EngineConfig(
        client=credentials.client_config(),
        rate_limit=10_000.0,
        min_batch_size=10,
        initial_batch_size=50,
    )
    async with Engine(
        config,
        hooks=[events.append, LoggingHook()],
        transport=server.transport,
        clock=server.clock,
        sleep=server.clock.sleep,
        wall_clock_ms=lambda: NOW_MS,
    ) as engine:
        run = await engine.run(
            [DeleteSpec(experiment_id=experiment_id, max_timestamp_millis=CUTOFF)]
        )
        client_repr = repr(engine.client)
        handles = repr(engine.jobs)
        engine_repr = repr(engine)
    async with TracesClient(credentials.client_config(), transport=server.transport) as client:
        server.script(Fault(status=401, text="You are not authenticated."))
        try:
            await client.delete_traces(experiment_id, trace_ids=["tr-" + "0" * 32])
        except Exception as error:  # the 401, checked by type below
            failure = error
    (report,) = run.jobs
    assert report.error_type == "PermissionDeniedError"
    assert report.retries >= 3
    assert report.ambiguous > 0
    assert type(failure).__name__ == "AuthenticationError"

    assert_nowhere(
        credentials,
        {
            "log": caplog.text,
            "log args": repr([record.args for record in caplog.records]),
            "events": repr(events),
            "report json": run.model_dump_json(),
            "report repr": repr(run),
            "config repr": repr(config) + str(config) + repr(config.client),
            "config dump": repr(config.model_dump()) + config.model_dump_json(),
            "client repr": client_repr,
            "engine repr": engine_repr + handles,
            "errors": "\n".join(report.errors) + (report.error or ""),
            "exception": exception_text(failure),
        },
    )


@pytest.mark.asyncio
async def test_a_server_echoing_the_authorization_header_does_not_leak_it(
    credentials: Credentials,
) -> None:
    """Even when a server echoes the request's headers in its error, the error hides the secret."""

    def echo(request: httpx.Request) -> httpx.Response:
        headers = dict(request.headers)
        return httpx.Response(400, json={"error_code": "BAD_REQUEST", "message": repr(headers)})

    async with TracesClient(
        credentials.client_config(), transport=httpx.MockTransport(echo)
    ) as client:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the text is what is checked
            await client.delete_traces("1", max_timestamp_millis=CUTOFF)
    assert_nowhere(credentials, {"exception": exception_text(raised.value)})


def test_credentials_in_the_tracking_uri_are_refused_without_echoing_them() -> None:
    """A URI with embedded credentials is refused, and the error does not repeat the password."""
    password = "pw-" + secrets.token_urlsafe(12)
    with pytest.raises(SpecError) as raised:
        ClientConfig(tracking_uri=f"http://bob:{password}@mlflow.example:5000")
    assert "must not embed credentials" in str(raised.value)
    assert password not in exception_text(raised.value)


# -- the CLI -----------------------------------------------------------------------------------


def run_command(
    credentials: Credentials,
    server: SimulatedServer,
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """Run the CLI on the simulated server; return its exit code and everything it printed."""
    code = run_cli(
        argv,
        environ=credentials.environ(),
        transport=server.transport,
        sleep=server.clock.sleep,
        wall_clock_ms=lambda: NOW_MS,
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def cli_arguments(experiment_id: str, audit_log: Path, output: str) -> list[str]:
    """A dry-run command line on the simulated server (add ``--execute`` to run it)."""
    argv = [
        "delete",
        "--experiment-id",
        experiment_id,
        "--max-timestamp-millis",
        str(CUTOFF),
        "--audit-log",
        str(audit_log),
        "--initial-batch-size",
        "50",
        "--min-batch-size",
        "10",
        "--rate",
        "1000",
    ]
    return [*argv, "--json"] if output == "--json" else argv


@pytest.mark.parametrize("output", ["--json", "human"])
def test_cli_output_and_audit_log_never_contain_the_secret(
    output: str,
    credentials: Credentials,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dry run, then a run through faults and a failure, never print or log the secret."""
    caplog.set_level(logging.DEBUG)
    server, experiment_id = world()
    audit_log = tmp_path / "audit.jsonl"
    argv = cli_arguments(experiment_id, audit_log, output)
    dry_code, dry_output = run_command(credentials, server, argv, capsys)
    server.script(*failing_schedule())
    code, run_output = run_command(credentials, server, [*argv, "--execute"], capsys)

    assert (dry_code, code) == (0, 1)
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    events = {record["event"] for record in records}
    assert {"run_start", "retry", "batch", "batch_outcome_unknown", "job_end"} <= events
    assert_nowhere(
        credentials,
        {
            "dry run output": dry_output,
            "run output": run_output,
            "audit log": audit_log.read_text(),
            "log": caplog.text,
        },
    )


@pytest.mark.parametrize(
    "output",
    [
        "--json",
        "human",
    ],
)
def test_cli_scrubs_a_secret_the_server_echoes_back(
    output: str, credentials: Credentials, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server error that quotes the secret is scrubbed from the CLI's output and audit log."""
    server, experiment_id = world()
    audit_log = tmp_path / "audit.jsonl"
    echo = Fault(status=500, error_code="INTERNAL_ERROR", message=f"bad {credentials.secret}")
    # Retried twice, then refused for good (a 400 is permanent): the job fails with it.
    refusal = Fault(
        status=400, error_code="INVALID_PARAMETER_VALUE", message=f"bad {credentials.secret}"
    )
    server.script(echo, echo, *[refusal] * 10)
    argv = [*cli_arguments(experiment_id, audit_log, output), "--execute"]
    code, printed = run_command(credentials, server, argv, capsys)

    assert code == 1
    assert "***" in audit_log.read_text()
    assert_nowhere(credentials, {"output": printed, "audit log": audit_log.read_text()})


def test_cli_refuses_credentials_in_the_tracking_uri_without_echoing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--tracking-uri http://user:password@host`` exits 2 and never prints the password."""
    password = "pw-" + secrets.token_urlsafe(12)
    uri = f"http://bob:{password}@mlflow.example:5000"
    argv = ["delete", "--experiment-id", "1", "--older-than", "30d", "--tracking-uri", uri]
    code = run_cli([*argv, "--audit-log", str(tmp_path / "audit.jsonl")], environ={})
    captured = capsys.readouterr()
    assert code == 2
    assert "must not embed credentials" in captured.err
    audit = (tmp_path / "audit.jsonl").read_text() if (tmp_path / "audit.jsonl").exists() else ""
    assert password not in captured.out + captured.err + audit


# -- TLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsServer:
    """A loopback HTTPS server with a self-signed certificate, answering experiments/get."""

    url: str
    cert_path: Path


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (also its own CA) for 127.0.0.1; (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _ExperimentHandler(BaseHTTPRequestHandler):
    """Answers every GET with experiment 1."""

    def do_GET(self) -> None:
        body = json.dumps({"experiment": {"experiment_id": "1", "name": "tls"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _QuietHTTPServer(ThreadingHTTPServer):
    """Failed TLS handshakes are what the test provokes: do not print them."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore the error."""


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    """An HTTPS server on a free loopback port, with a certificate no system CA signed."""
    cert_path, key_path = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = _QuietHTTPServer(("127.0.0.1", 0), _ExperimentHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TlsServer(f"https://127.0.0.1:{server.server_address[1]}", cert_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.asyncio
async def test_tls_is_verified_by_default(tls_server: TlsServer) -> None:
    """By default a self-signed certificate is refused; trusting it or opting out connects."""
    assert ClientConfig.from_env({"MLFLOW_TRACKING_URI": tls_server.url}).insecure_tls is False
    async with TracesClient(ClientConfig(tracking_uri=tls_server.url)) as client:
        with pytest.raises(ConnectError):
            await client.get_experiment("1")
    trusted = ClientConfig(tracking_uri=tls_server.url, server_cert_path=str(tls_server.cert_path))
    async with TracesClient(trusted) as client:
        assert (await client.get_experiment("1")).experiment_id == "1"
    insecure = ClientConfig.from_env(
        {"MLFLOW_TRACKING_URI": tls_server.url, "MLFLOW_TRACKING_INSECURE_TLS": "true"}
    )
    async with TracesClient(insecure) as client:
        assert (await client.get_experiment("1")).experiment_id == "1"
