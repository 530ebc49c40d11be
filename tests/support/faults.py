"""What `FaultProxy` can do to one request: `FaultKind` and the `Fault` constructors.

Re-exported by `tests.support.fault_proxy`, which applies them to requests on the wire.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import ClassVar

# What an MLflow-shaped JSON error body carries for each status, when the test gives no body.
_MLFLOW_ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    404: "RESOURCE_DOES_NOT_EXIST",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}
_UNAUTHENTICATED_TEXT = (
    "You are not authenticated. Please see "
    "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow "
    "on how to authenticate."
)
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
# What gateways send when they lost the upstream's answer (bodies as the real ones).
_ENVOY_503_TEXT = (
    "upstream connect error or disconnect/reset before headers. "
    "reset reason: connection termination"
)
_NGINX_500_HTML = (
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_CLOUDFLARE_REASONS = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
}
_CLOUDFLARE_RAY = "8f2a6b1c3d4e5f60-AMS"
_SSO_LOGIN = "https://sso.example.com/login?next=/"


class FaultKind(enum.StrEnum):
    """What the proxy does to one request; the keys of `ProxyStats.injected`."""

    PASS = "pass"
    STATUS = "status"
    STATUS_AFTER = "status_after"
    REDIRECT = "redirect"
    RESET_BEFORE = "reset_before"
    RESET_AFTER = "reset_after"
    DELAY = "delay"
    TRICKLE = "trickle"
    TRUNCATED_JSON = "truncated_json"
    INVALID_JSON = "invalid_json"


# The kinds that answer a status of their own; `ProxyStats.injected_statuses` counts them.
_STATUS_KINDS = frozenset({FaultKind.STATUS, FaultKind.STATUS_AFTER, FaultKind.REDIRECT})
_NOT_FORWARDED = frozenset(
    {FaultKind.STATUS, FaultKind.REDIRECT, FaultKind.RESET_BEFORE, FaultKind.INVALID_JSON}
)


@dataclasses.dataclass(frozen=True)
class Fault:
    """One scripted behaviour; build it with the class methods, not the constructor.

    Faults are hashable (the keys of `script_random`'s weights); equal faults are one key.

    Attributes:
        kind: What happens to the request.
        status_code: The status sent by `status`, `status_after`, `redirect` and
            `invalid_json` faults.
        body: The body they send.
        headers: Their extra response headers.
        seconds: How long a `delay` fault holds the upstream response.
        chunk_bytes: How many bytes a `trickle` fault sends at a time.
        interval: The pause between two `trickle` chunks.
        times: How many consecutive matching requests the fault applies to (scripts only).
    """

    kind: FaultKind
    status_code: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    chunk_bytes: int = 1
    interval: float = 0.0
    times: int = 1

    PASS: ClassVar[Fault]

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ValueError(f"times must be at least 1, got {self.times}")
        if self.seconds < 0 or self.interval < 0:
            raise ValueError("seconds and interval must not be negative")
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be at least 1, got {self.chunk_bytes}")
        if not 100 <= self.status_code <= 999:
            raise ValueError(f"status_code must be a 3-digit HTTP status, got {self.status_code}")

    def repeat(self, times: int) -> Fault:
        """Return this fault applied to `times` consecutive matching requests."""
        return dataclasses.replace(self, times=times)

    @property
    def forwards(self) -> bool:
        """Whether the request reaches the upstream server under this fault."""
        return self.kind not in _NOT_FORWARDED

    @property
    def injected_status(self) -> int | None:
        """The status this fault answers instead of the upstream's, if it answers its own."""
        return self.status_code if self.kind in _STATUS_KINDS else None

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: bytes | str | Mapping[str, object] | None = None,
        retry_after: float | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer `code` without forwarding: nothing happens upstream.

        Args:
            code: The HTTP status.
            body: A mapping (sent as JSON), text or bytes. By default an MLflow-shaped JSON
                error (`error_code`, `message`); plain text for 401 and 403, as MLflow's auth.
                Empty bytes send no `Content-Type` unless `content_type` is given.
            retry_after: The `Retry-After` header value, if any.
            content_type: Overrides the inferred `Content-Type`.
            headers: Further response headers.
        """
        payload, extra = _status_answer(code, body, retry_after, content_type, headers)
        return cls(FaultKind.STATUS, status_code=code, body=payload, headers=extra)

    @classmethod
    def status_after(
        cls,
        code: int,
        *,
        body: bytes | str | Mapping[str, object] | None = None,
        retry_after: float | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Forward, wait for the whole upstream response, discard it, then answer `code`.

        The server did the work; the client is told it failed. This is what a gateway (Envoy
        or Istio, nginx, Cloudflare) sends when it loses the upstream's answer. The arguments
        are those of `status`; the log entry shows `forwarded`, the `upstream_status` and the
        injected `response_status`. See `envoy_503_after`, `nginx_500_after` and
        `cloudflare_after` for realistic bodies; `status_after(599, body=b"")` sends a
        non-standard status with an empty body.
        """
        payload, extra = _status_answer(code, body, retry_after, content_type, headers)
        return cls(FaultKind.STATUS_AFTER, status_code=code, body=payload, headers=extra)

    @classmethod
    def envoy_503_after(cls) -> Fault:
        """`status_after` 503 with Envoy's (and Istio's) plain-text "upstream ... reset"."""
        return cls.status_after(
            503, body=_ENVOY_503_TEXT, content_type="text/plain", headers={"Server": "envoy"}
        )

    @classmethod
    def nginx_500_after(cls) -> Fault:
        """`status_after` 500 with nginx's own HTML error page."""
        return cls.status_after(
            500, body=_NGINX_500_HTML, content_type="text/html", headers={"Server": "nginx"}
        )

    @classmethod
    def cloudflare_after(cls, code: int) -> Fault:
        """`status_after` with one of Cloudflare's origin errors, 520 to 524, and its page.

        Whatever the code says (521 "Web server is down" included), the origin did the work:
        the worst case for a client. Use `status` with the same code for one that did not.
        """
        reason = _CLOUDFLARE_REASONS.get(code)
        if reason is None:
            raise ValueError(f"Cloudflare origin errors are 520 to 524, got {code}")
        page = (
            f"<!DOCTYPE html><html><head><title>example.com | {code}: {reason}</title></head>"
            f"<body><h1>Error {code}</h1><p>{reason}</p>"
            f"<p>Cloudflare Ray ID: {_CLOUDFLARE_RAY} &bull; Performance &amp; security by "
            f'<a href="https://www.cloudflare.com/">Cloudflare</a></p></body></html>'
        )
        headers = {"Server": "cloudflare", "CF-RAY": _CLOUDFLARE_RAY}
        return cls.status_after(
            code, body=page, content_type="text/html; charset=UTF-8", headers=headers
        )

    @classmethod
    def redirect(cls, location: str = _SSO_LOGIN, code: int = 302) -> Fault:
        """Answer a 3xx to `location` without forwarding, as an SSO login gate in front.

        Nothing happens upstream. The body is a short HTML link, as such gates send.
        """
        if not 300 <= code <= 399:
            raise ValueError(f"a redirect is a 3xx status, got {code}")
        body = f'<a href="{location}">Found</a>.\n'.encode()
        headers = (("Location", location), ("Content-Type", _HTML))
        return cls(FaultKind.REDIRECT, status_code=code, body=body, headers=headers)

    @classmethod
    def too_many_requests(cls, *, retry_after: float | str | None = None) -> Fault:
        """429 `REQUEST_LIMIT_EXCEEDED`, optionally with `Retry-After`."""
        body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests."}
        return cls.status(429, body=body, retry_after=retry_after)

    @classmethod
    def database_locked(cls) -> Fault:
        """503 `TEMPORARILY_UNAVAILABLE` "database is locked": transient on SQLite."""
        message = "(sqlite3.OperationalError) database is locked"
        return cls.status(503, body={"error_code": "TEMPORARILY_UNAVAILABLE", "message": message})

    @classmethod
    def too_many_sql_variables(cls) -> Fault:
        """503 `TEMPORARILY_UNAVAILABLE` "too many SQL variables": permanent for that size."""
        message = "(sqlite3.OperationalError) too many SQL variables"
        return cls.status(503, body={"error_code": "TEMPORARILY_UNAVAILABLE", "message": message})

    @classmethod
    def internal_error(cls) -> Fault:
        """500 `INTERNAL_ERROR`."""
        return cls.status(500)

    @classmethod
    def unauthorized(cls) -> Fault:
        """401 with a non-JSON body and `WWW-Authenticate`, as MLflow's basic auth."""
        return cls.status(401)

    @classmethod
    def forbidden(cls) -> Fault:
        """403 "Permission denied" as plain text, as MLflow's basic auth."""
        return cls.status(403)

    @classmethod
    def reset_before(cls) -> Fault:
        """Reset the client connection (RST) without forwarding: nothing happens upstream."""
        return cls(FaultKind.RESET_BEFORE)

    @classmethod
    def reset_after(cls) -> Fault:
        """Forward, wait for the whole upstream response, then reset the client connection."""
        return cls(FaultKind.RESET_AFTER)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Forward, then hold the upstream response for `seconds` before sending it."""
        return cls(FaultKind.DELAY, seconds=seconds)

    @classmethod
    def trickle(cls, chunk_bytes: int = 1, interval: float = 0.2) -> Fault:
        """Forward, then send the response body `chunk_bytes` at a time, `interval` apart."""
        return cls(FaultKind.TRICKLE, chunk_bytes=chunk_bytes, interval=interval)

    @classmethod
    def truncated_json(cls) -> Fault:
        """Forward, then send the upstream status with the first half of its body only.

        `Content-Length` matches the cut body, so the HTTP message is valid; its JSON is not.
        """
        return cls(FaultKind.TRUNCATED_JSON)

    @classmethod
    def invalid_json(cls) -> Fault:
        """Answer 200 with an HTML body without forwarding, as a misconfigured gateway."""
        body = b"<html><body><h1>It works!</h1></body></html>"
        headers = (("Content-Type", _HTML),)
        return cls(FaultKind.INVALID_JSON, status_code=200, body=body, headers=headers)


Fault.PASS = Fault(FaultKind.PASS)


def _status_answer(
    code: int,
    body: bytes | str | Mapping[str, object] | None,
    retry_after: float | str | None,
    content_type: str | None,
    headers: Mapping[str, str] | None,
) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The body and headers of a `status` or `status_after` answer (see `Fault.status`)."""
    if body is None and code in (401, 403):
        body = _UNAUTHENTICATED_TEXT if code == 401 else "Permission denied"
        content_type = content_type or _HTML
    elif body is None:
        error_code = _MLFLOW_ERROR_CODES.get(code, "INTERNAL_ERROR")
        body = {"error_code": error_code, "message": f"HTTP {code} injected by FaultProxy"}
    inferred_type: str | None
    if isinstance(body, Mapping):
        payload, inferred_type = json.dumps(body).encode(), _JSON
    elif isinstance(body, str):
        payload, inferred_type = body.encode(), "text/plain; charset=utf-8"
    else:
        payload, inferred_type = body, "application/octet-stream" if body else None
    extra = dict(headers or {})
    if code == 401:
        extra.setdefault("WWW-Authenticate", 'Basic realm="mlflow"')
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    resolved_type = content_type or inferred_type
    if resolved_type:
        extra["Content-Type"] = resolved_type
    return payload, tuple(extra.items())
