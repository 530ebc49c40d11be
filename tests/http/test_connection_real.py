"""The client against real sockets that are not a working MLflow server: a port nobody
listens on, a name that does not resolve, TLS to a plain HTTP port, a self-signed TLS server,
and web servers answering pages (an HTML 404, a 200 login page, a redirect to one).

Each error names the server, the cause and what to check; none reads as "no such
experiment", none is a retry of a delete. No mlflow needed: everything is local and fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from async_trace_delete import (
    ClientConfig,
    ConnectError,
    NotFoundError,
    NotMlflowServerError,
    RedirectError,
    TracesClient,
)
from tests.support.mlflow_server import free_port
from tests.support.web_servers import Page, page_server, self_signed_cert

LOGIN_PAGE = Page(
    200, "text/html; charset=utf-8", "<html><title>Sign in - Example SSO</title>...</html>"
)


def client_for(url: str, **fields: object) -> TracesClient:
    return TracesClient(ClientConfig(tracking_uri=url, timeout=5, **fields))


@pytest.mark.asyncio
async def test_a_refused_port_names_the_server_and_the_refusal() -> None:
    """Nothing listens on the port: "connection refused", and whether mlflow server runs."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with client_for(url) as client:
        with pytest.raises(ConnectError) as caught:
            await client.get_experiment_by_name("big-a")
    assert str(caught.value).startswith(
        f"could not connect to the MLflow server at {url}: connection refused: nothing "
        f"listens on port {port} of 127.0.0.1; is `mlflow server` running at {url}, on port "
        f"{port}?"
    )
    assert not caught.value.outcome_unknown


@pytest.mark.asyncio
async def test_a_name_that_does_not_resolve_says_no_such_host() -> None:
    """``.invalid`` never resolves (RFC 2606): "no such host", and to check the name."""
    url = "http://no-such-host.invalid:5000"
    async with client_for(url) as client:
        with pytest.raises(ConnectError) as caught:
            await client.get_experiment_by_name("big-a")
    message = str(caught.value)
    assert message.startswith(f"could not connect to the MLflow server at {url}: ")
    assert "'no-such-host.invalid'" in message
    assert "no such host" in message or "could not be resolved" in message


@pytest.mark.asyncio
async def test_tls_to_a_plain_http_port_says_it_does_not_speak_tls() -> None:
    """https:// to a plain HTTP server: the handshake fails, and http:// is suggested."""
    with page_server(Page()) as (url, seen):
        tls_url = url.replace("http://", "https://")
        async with client_for(tls_url) as client:
            with pytest.raises(ConnectError) as caught:
                await client.get_experiment_by_name("big-a")
    message = str(caught.value)
    assert message.startswith(f"could not connect to the MLflow server at {tls_url}: ")
    assert "does not seem to speak TLS" in message
    assert "use http://" in message
    assert not any(line.startswith("GET /api") for line in seen)  # no HTTP request was read


@pytest.mark.asyncio
async def test_a_self_signed_server_names_the_certificate_settings(tmp_path: Path) -> None:
    """An untrusted certificate: the reason, and the two MLFLOW_* settings that help; with
    the certificate given, the same server is reached (and answers a page, not MLflow)."""
    cert = self_signed_cert(tmp_path)
    with page_server(Page(), cert=cert) as (url, _):
        async with client_for(url) as client:
            with pytest.raises(ConnectError) as caught:
                await client.get_experiment_by_name("big-a")
        async with client_for(url, server_cert_path=str(cert[0])) as trusting:
            with pytest.raises(NotMlflowServerError):
                await trusting.get_experiment_by_name("big-a")
    message = str(caught.value)
    assert f"at {url}: the TLS certificate was refused (self-signed certificate)" in message
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in message
    assert "MLFLOW_TRACKING_INSECURE_TLS=true" in message


@pytest.mark.asyncio
async def test_an_html_404_is_not_mlflow_not_a_missing_experiment() -> None:
    """A plain web server's 404 page: "did not answer like an MLflow tracking server", never
    NotFoundError (which reads as "no experiment named 'big-a'")."""
    with page_server(Page()) as (url, seen):
        async with client_for(url) as client:
            with pytest.raises(NotMlflowServerError) as caught:
                await client.get_experiment_by_name("big-a")
    assert not isinstance(caught.value, NotFoundError)
    assert str(caught.value).startswith(
        f"the server at {url} did not answer like an MLflow tracking server (got 404 "
        "text/html '404 Not Found' from /api/2.0/mlflow/experiments/get-by-name, where MLflow "
        "answers JSON)"
    )
    assert seen == ["GET /api/2.0/mlflow/experiments/get-by-name?experiment_name=big-a"]


@pytest.mark.asyncio
async def test_a_login_page_answering_a_delete_fails_once_outcome_unknown() -> None:
    """A 200 login page answering a delete: not MLflow, not retried (FAIL), and in doubt
    (something in front of MLflow answered: what it forwarded is unknown)."""
    with page_server(LOGIN_PAGE) as (url, seen):
        async with client_for(url) as client:
            with pytest.raises(NotMlflowServerError) as caught:
                await client.delete_traces("1", max_timestamp_millis=1_000, max_traces=10)
    error = caught.value
    assert (
        "got 200 text/html 'Sign in - Example SSO' from /api/2.0/mlflow/traces/delete-traces"
        in (str(error))
    )
    assert error.retry_decision.name == "FAIL"
    assert error.outcome_unknown
    assert len(seen) == 1


@pytest.mark.asyncio
async def test_a_redirect_to_a_login_page_is_not_mlflow() -> None:
    """A 302 to an SSO page is named as such, with where it points; it is not followed."""
    page = Page(302, "text/html", "", {"Location": "https://sso.example.com/login"})
    with page_server(page) as (url, seen):
        async with client_for(url) as client:
            with pytest.raises(RedirectError) as caught:
                await client.get_experiment_by_name("big-a")
    assert isinstance(caught.value, NotMlflowServerError)
    assert str(caught.value).startswith(
        f"the server at {url} did not answer like an MLflow tracking server (got a 302 "
        "redirect to 'https://sso.example.com/login' from /api/2.0/mlflow/experiments/get-by-name"
    )
    assert len(seen) == 1
