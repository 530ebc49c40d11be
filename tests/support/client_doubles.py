"""MockTransport doubles the TracesClient tests share: a recording handler and canned answers.

No network and no sleeping: a client made by `make_client` talks to an ``httpx.MockTransport``
and reads "now" from a fixed clock.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable
from typing import Any

import httpx

from async_trace_delete import ClientConfig, TracesClient

BASE_URL = "http://mlflow.test:5000"
# 2025-01-01T00:00:00Z: "now" for Retry-After HTTP dates.
FIXED_NOW = float(calendar.timegm((2025, 1, 1, 0, 0, 0)))

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that remembers every request it saw."""

    def __init__(self, respond: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


def answer(status: int = 200, payload: Any = None, **kwargs: Any) -> Handler:
    """A handler that always answers ``status`` with a JSON ``payload``."""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload if payload is not None else {}, **kwargs)

    return respond


def raising(error_type: type[httpx.HTTPError]) -> Handler:
    """A handler that fails the way the network does."""

    def respond(request: httpx.Request) -> httpx.Response:
        if issubclass(error_type, httpx.RequestError):
            raise error_type("simulated failure", request=request)
        raise error_type("simulated failure")  # pragma: no cover - all cases are RequestError

    return respond


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    config: ClientConfig | None = None,
    clock: Callable[[], float] = lambda: FIXED_NOW,
) -> TracesClient:
    return TracesClient(
        config if config is not None else ClientConfig(tracking_uri=BASE_URL),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )


def utc_millis(*parts: int) -> int:
    return calendar.timegm((*parts, 0, 0, 0)[:6]) * 1000


def assert_no_httpx_leak(error: BaseException) -> None:
    """Our error is not an httpx one, and the httpx chain is hidden from tracebacks."""
    assert not isinstance(error, httpx.HTTPError)
    assert error.__cause__ is None
    if error.__context__ is not None:
        assert error.__suppress_context__


def replay(response: httpx.Response) -> Handler:
    """A handler answering a fresh copy of ``response`` on each call."""

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    return respond
