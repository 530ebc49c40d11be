"""Why a connection failed, read off the exception chain by the error table (pure), and the
message the client raises: it names the server, the cause and what to check.

Plain exceptions chained by hand, as httpx and httpcore chain them: no network, no sleeping.
"""

from __future__ import annotations

import errno
import itertools
import socket
import ssl

import httpx
import pytest

from async_trace_delete import ConnectError, RequestTimeoutError, TransportError
from async_trace_delete._error_table import connection_cause, transport_error_for
from tests.support.client_doubles import make_client, raising

SERVER = "http://mlflow.internal:5000"


def chained(*errors: BaseException) -> BaseException:
    """``errors[0]`` raised from ``errors[1]``, raised from ``errors[2]``... (as httpx wraps
    httpcore, which wraps the OS error)."""
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


def refused() -> BaseException:
    return chained(
        httpx.ConnectError("All connection attempts failed"),
        OSError("All connection attempts failed"),
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.0.0.5', 5000)"),
    )


def cert_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    error.verify_message = "self-signed certificate"
    error.reason = "CERTIFICATE_VERIFY_FAILED"
    return error


def not_tls_error() -> ssl.SSLError:
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"
    return error


@pytest.mark.parametrize(
    ("error", "what", "check"),
    [
        (refused(), "connection refused: nothing listens on port 5000 of mlflow.internal",
         f"is `mlflow server` running at {SERVER}, on port 5000?"),
        (
            chained(httpx.ConnectError("x"), socket.gaierror(socket.EAI_NONAME, "not known")),
            "no such host: 'mlflow.internal' does not resolve",
            "check the host name in the tracking URI",
        ),
        (
            chained(httpx.ConnectError("x"), socket.gaierror(socket.EAI_AGAIN, "temporary")),
            "'mlflow.internal' could not be resolved right now",
            "check the DNS server",
        ),
        (chained(httpx.ConnectError("x"), cert_error()),
         "the TLS certificate was refused (self-signed certificate)",
         "MLFLOW_TRACKING_SERVER_CERT_PATH"),
        (chained(httpx.ConnectError("x"), not_tls_error()),
         "port 5000 of mlflow.internal does not seem to speak TLS", "use http://"),
        (chained(httpx.ConnectTimeout("timed out")),
         "the connection to mlflow.internal:5000 timed out", "firewall"),
        (chained(httpx.ConnectError("x"), TimeoutError()), "timed out", "port open"),
        (chained(httpx.ConnectError("x"), OSError(errno.ENETUNREACH, "Network is unreachable")),
         "mlflow.internal is unreachable (Network is unreachable)", "check the address"),
        (chained(httpx.ReadError("x"), ConnectionResetError(errno.ECONNRESET, "reset")),
         "mlflow.internal:5000 closed the connection", "http:// or https://"),
    ],
    ids=["refused", "no-such-host", "dns-down", "certificate", "not-tls", "httpx-timeout",
         "os-timeout", "unreachable", "reset"],
)  # fmt: skip
def test_connection_cause_reads_the_chain(error: BaseException, what: str, check: str) -> None:
    """Each OS or TLS failure under the transport's exception is named, with what to check."""
    cause = connection_cause(error, SERVER)
    assert cause is not None
    assert what in cause.what
    assert check in cause.check


def test_the_most_specific_cause_wins() -> None:
    """A certificate failure found anywhere in the chain wins over a refusal above it."""
    error = chained(httpx.ConnectError("x"), ConnectionRefusedError(), cert_error())
    cause = connection_cause(error, "https://mlflow.internal")
    assert cause is not None
    assert "certificate" in cause.what


def test_an_unknown_chain_has_no_cause() -> None:
    """A chain of nothing known says nothing (the client then shows the exception's text)."""
    assert connection_cause(httpx.ConnectError("odd"), SERVER) is None


def test_a_cyclic_chain_ends() -> None:
    """Exceptions whose context points back at themselves do not loop forever."""
    outer, inner = httpx.ConnectError("x"), OSError("y")
    outer.__cause__, inner.__context__ = inner, outer
    assert connection_cause(outer, SERVER) is None


def test_default_ports_follow_the_scheme() -> None:
    """Without a port in the URL, the advice names the scheme's port."""
    plain = connection_cause(refused(), "http://mlflow.internal")
    tls = connection_cause(refused(), "https://mlflow.internal")
    assert plain is not None
    assert tls is not None
    assert "port 80 of mlflow.internal" in plain.what
    assert "port 443 of mlflow.internal" in tls.what


def test_transport_error_for_names_server_cause_and_check() -> None:
    """A refused connection: a ConnectError (nothing was sent) naming all three."""
    error = transport_error_for(
        "connect", refused(), server=SERVER, detail="ConnectError: x", endpoint="/api/x"
    )
    assert type(error) is ConnectError
    assert not error.outcome_unknown
    assert error.server == SERVER
    assert str(error) == (
        f"could not connect to the MLflow server at {SERVER}: connection refused: nothing "
        f"listens on port 5000 of mlflow.internal; is `mlflow server` running at {SERVER}, "
        "on port 5000? [/api/x]"
    )


def test_transport_error_for_unknown_cause_shows_the_detail() -> None:
    """When the chain names nothing known, the transport's own words are shown."""
    error = transport_error_for(
        "connect", httpx.ConnectError("odd"), server=SERVER, detail="ConnectError: odd"
    )
    assert str(error) == f"could not connect to the MLflow server at {SERVER}: ConnectError: odd"


def test_transport_error_for_each_kind() -> None:
    """Pool and read timeouts and broken connections keep their classes, with the server."""
    pool = transport_error_for("pool", httpx.PoolTimeout("p"), server=SERVER, detail="PoolTimeout")
    read = transport_error_for(
        "timeout", httpx.ReadTimeout("r"), server=SERVER, detail="ReadTimeout"
    )
    broken = transport_error_for(
        "other",
        httpx.RemoteProtocolError("gone"),
        server=SERVER,
        detail="RemoteProtocolError: gone",
    )
    assert type(pool) is ConnectError
    assert not pool.outcome_unknown
    assert type(read) is RequestTimeoutError
    assert read.outcome_unknown
    assert type(broken) is TransportError
    assert broken.outcome_unknown
    assert f"no answer from the MLflow server at {SERVER} in time (ReadTimeout)" in str(read)
    assert f"at {SERVER} failed: RemoteProtocolError: gone" in str(broken)
    assert SERVER in str(pool)


@pytest.mark.asyncio
async def test_client_names_its_server_in_a_connect_error() -> None:
    """Through the client: the server's URL is in the message (a bare ConnectError of the
    mock transport says no more than its type)."""
    async with make_client(raising(httpx.ConnectError)) as client:
        with pytest.raises(ConnectError) as caught:
            await client.get_experiment_by_name("big-a")
    assert "could not connect to the MLflow server at http://mlflow.test:5000" in str(caught.value)
    assert caught.value.server == "http://mlflow.test:5000"
    assert caught.value.__context__ is None  # the httpx exception (and its request) is dropped
