"""The error answers and transport failures the TracesClient tests map, one table each.

`ERROR_CASES` (statuses and unreadable 2xx) and `TRANSPORT_CASES` (httpx failures) are swept by
the error-mapping tests and, with credentials set, by the secrets tests.
"""

from __future__ import annotations

from typing import Any

import httpx

from async_trace_delete import (
    AuthenticationError,
    BatchTooLargeError,
    ConnectError,
    InvalidParameterError,
    InvalidResponseError,
    MlflowApiError,
    NotFoundError,
    NotMlflowServerError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    ThrottledError,
    TransportError,
)


def mlflow_error(status: int, error_code: str, message: str, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, json={"error_code": error_code, "message": message}, **kwargs)


ErrorCase = tuple[httpx.Response, type[MlflowApiError], str | None, bool, float | None, str]

ERROR_CASES: dict[str, ErrorCase] = {
    # id: (response, exact type, error_code, outcome_unknown, retry_after, text in message)
    "400-invalid-parameter": (
        mlflow_error(
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value 'abc' for parameter 'experiment_id' supplied.",
        ),
        InvalidParameterError,
        "INVALID_PARAMETER_VALUE",
        False,
        None,
        "Invalid value 'abc' for parameter 'experiment_id' supplied.",
    ),
    "404-plain": (  # not MLflow's JSON error: whatever answered is not MLflow
        httpx.Response(404, text="<html>Not Found</html>"),
        NotMlflowServerError,
        None,
        False,
        None,
        "did not answer like an MLflow tracking server (got 404 text/plain",
    ),
    "400-resource-does-not-exist": (
        mlflow_error(400, "RESOURCE_DOES_NOT_EXIST", "No experiment 'x'"),
        NotFoundError,
        "RESOURCE_DOES_NOT_EXIST",
        False,
        None,
        "No experiment 'x'",
    ),
    "401-basic-auth-html": (
        httpx.Response(
            401,
            text="You are not authenticated. Please see "
            "https://www.mlflow.org/docs/latest/auth/index.html",
            headers={"WWW-Authenticate": 'Basic realm="mlflow"', "Content-Type": "text/html"},
        ),
        AuthenticationError,
        None,
        False,
        None,
        "You are not authenticated",
    ),
    "403-plain-text": (
        httpx.Response(403, text="Permission denied", headers={"Content-Type": "text/plain"}),
        PermissionDeniedError,
        None,
        False,
        None,
        "Permission denied",
    ),
    "429-retry-after-seconds": (
        httpx.Response(429, text="slow down", headers={"Retry-After": "7"}),
        ThrottledError,
        None,
        False,
        7.0,
        "slow down",
    ),
    "429-retry-after-http-date": (
        httpx.Response(429, text="", headers={"Retry-After": "Wed, 01 Jan 2025 00:01:30 GMT"}),
        ThrottledError,
        None,
        False,
        90.0,
        "too many requests",
    ),
    "503-database-locked": (
        mlflow_error(
            503,
            "TEMPORARILY_UNAVAILABLE",
            "(sqlite3.OperationalError) database is locked",
            headers={"Retry-After": "2"},
        ),
        ServerUnavailableError,
        "TEMPORARILY_UNAVAILABLE",
        False,
        2.0,
        "database is locked",
    ),
    "503-too-many-sql-variables": (
        mlflow_error(
            503,
            "TEMPORARILY_UNAVAILABLE",
            "(sqlite3.OperationalError) too many SQL variables\n[SQL: DELETE FROM trace_info "
            "WHERE trace_info.request_id IN (" + "?, " * 2000 + "?)]",
        ),
        BatchTooLargeError,
        "TEMPORARILY_UNAVAILABLE",
        False,
        None,
        "too many SQL variables",
    ),
    "413-too-large": (
        httpx.Response(413, text="Request Entity Too Large"),
        BatchTooLargeError,
        None,
        False,
        None,
        "Request Entity Too Large",
    ),
    "500-internal": (
        mlflow_error(500, "INTERNAL_ERROR", "boom"),
        ServerError,
        "INTERNAL_ERROR",
        False,
        None,
        "boom",
    ),
    "502-bad-gateway": (
        httpx.Response(502, text="Bad Gateway"),
        ServerError,
        None,
        True,
        None,
        "Bad Gateway",
    ),
    "504-gateway-timeout": (
        httpx.Response(504, text="", headers={"Retry-After": "3"}),
        ServerError,
        None,
        True,
        3.0,
        "bad gateway",
    ),
    "200-not-json": (  # a page answering a delete: not MLflow, nobody knows what it forwarded
        httpx.Response(200, text="<html>login page</html>"),
        NotMlflowServerError,
        None,
        True,
        None,
        "did not answer like an MLflow tracking server (got 200 text/plain",
    ),
    "200-truncated-json": (
        httpx.Response(
            200, content=b'{"traces_deleted": 1', headers={"Content-Type": "application/json"}
        ),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-empty-body": (
        httpx.Response(200, content=b""),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-invalid-utf8": (
        httpx.Response(200, content=b"\xff\xfe\xfa{", headers={"Content-Type": "application/json"}),
        InvalidResponseError,
        None,
        True,
        None,
        "not JSON",
    ),
    "200-json-array": (
        httpx.Response(200, json=[1, 2]),
        InvalidResponseError,
        None,
        True,
        None,
        "not an object",
    ),
}

TRANSPORT_CASES: dict[str, tuple[type[httpx.HTTPError], type[MlflowApiError], bool]] = {
    # id: (httpx error raised, exact type we raise, outcome_unknown)
    "connect-error": (httpx.ConnectError, ConnectError, False),
    "connect-timeout": (httpx.ConnectTimeout, ConnectError, False),
    "pool-timeout": (httpx.PoolTimeout, ConnectError, False),
    "read-timeout": (httpx.ReadTimeout, RequestTimeoutError, True),
    "write-timeout": (httpx.WriteTimeout, RequestTimeoutError, True),
    "remote-protocol-error": (httpx.RemoteProtocolError, TransportError, True),
    "read-error": (httpx.ReadError, TransportError, True),
    "write-error": (httpx.WriteError, TransportError, True),
}
