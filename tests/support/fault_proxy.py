"""A scriptable, fault-injecting HTTP/1.1 proxy that sits in front of a real `mlflow server`.

Fault tests point the client under test at `proxy.url` and script what goes wrong, request by
request::

    async with FaultProxy(upstream=server.url) as proxy:
        proxy.script(
            path_contains="delete-traces",
            faults=[Fault.too_many_requests(retry_after=1), Fault.reset_after(), Fault.PASS],
        )
        ...  # run the client against proxy.url
        assert proxy.stats.injected["reset_after"] == 1

Each fault applies to the next matching request, in order; `Fault.repeat(n)` makes one sustained.
When a script is exhausted, requests pass through untouched. `script_random` draws faults from
seeded weights instead. Faults that *forward* (pass, status_after, reset_after, delay, trickle,
truncated_json) always complete the upstream call, even if the client has gone: the server did
the work. `Fault` and `FaultKind` live in `tests.support.faults` and are re-exported here.

Loopback only; not thread-safe (use `FaultProxyThread` from synchronous code).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Self

import httpx

from tests.support.faults import Fault, FaultKind

__all__ = ["Fault", "FaultKind", "FaultProxy", "FaultProxyThread", "ProxyLogEntry", "ProxyStats"]

_LOOPBACK = "127.0.0.1"
_MAX_HEADER_LINES = 200
_MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_REQUESTS_PER_CONNECTION = 100_000
_DISCONNECT_POLL_SECONDS = 0.02
_CLOSE_TIMEOUT_SECONDS = 5.0
# Per-connection (RFC 9110 section 7.6.1) headers that must not cross a proxy.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclasses.dataclass
class ProxyLogEntry:
    """What happened to one request; times are `time.monotonic()` seconds.

    Attributes:
        started: When the proxy had read the whole request.
        method: The request method.
        path: The request target (path and query).
        fault: What the proxy did.
        forwarded: Whether the request was sent upstream.
        upstream_status: The upstream status, once its response was read.
        upstream_error: Why the upstream call failed, if it did.
        response_status: The status sent to the client (None when reset or gone).
        client_disconnected: The client went away before the response was sent.
        finished: When the proxy was done with the request (None while in flight).
    """

    started: float
    method: str
    path: str
    fault: FaultKind
    forwarded: bool = False
    upstream_status: int | None = None
    upstream_error: str | None = None
    response_status: int | None = None
    client_disconnected: bool = False
    finished: float | None = None


@dataclasses.dataclass
class ProxyStats:
    """Counters and the per-request log of one proxy.

    Attributes:
        injected: Fault kind (e.g. "status", "reset_after") to how many requests got it.
        injected_statuses: Status code to how many faults answered it with their own status
            (`status`, `status_after` and `redirect`).
        injected_kind_statuses: The same, split by kind: `("status_after", 503)` to a count.
        forwarded: How many requests were sent upstream.
        connections: How many client connections the proxy accepted.
        log: One entry per request, in arrival order.
        errors: Unexpected errors inside the proxy; a test may assert this stays empty.
    """

    injected: Counter[str] = dataclasses.field(default_factory=Counter)
    injected_statuses: Counter[int] = dataclasses.field(default_factory=Counter)
    injected_kind_statuses: Counter[tuple[str, int]] = dataclasses.field(default_factory=Counter)
    forwarded: int = 0
    connections: int = 0
    log: list[ProxyLogEntry] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def requests(self, path_contains: str = "") -> list[ProxyLogEntry]:
        """Return the log entries whose path contains `path_contains`."""
        return [entry for entry in self.log if path_contains in entry.path]

    def max_calls_in_window(self, path_contains: str = "", window: float = 1.0) -> int:
        """Return the most matching requests that started within any `window` seconds."""
        starts = sorted(entry.started for entry in self.requests(path_contains))
        best, first = 0, 0
        for last, started in enumerate(starts):
            while started - starts[first] > window:
                first += 1
            best = max(best, last - first + 1)
        return best

    def calls_per_second(self, path_contains: str = "", window: float = 1.0) -> float:
        """Return the peak rate of matching requests, measured over a sliding `window`."""
        return self.max_calls_in_window(path_contains, window) / window

    def peak_concurrency(self, path_contains: str = "") -> int:
        """Return the most matching requests the proxy held in flight at the same time."""
        events: list[tuple[float, int]] = []
        for entry in self.requests(path_contains):
            events.append((entry.started, 1))
            events.append((entry.finished if entry.finished is not None else float("inf"), -1))
        in_flight = peak = 0
        for _, step in sorted(events):  # at equal times, -1 sorts first: end before start
            in_flight += step
            peak = max(peak, in_flight)
        return peak


@dataclasses.dataclass
class _Rule:
    """Which requests a script applies to, and the faults still to hand out."""

    path_contains: str
    method: str | None
    script: list[Fault] = dataclasses.field(default_factory=list)
    used_of_first: int = 0
    generator: random.Random | None = None
    weights: tuple[tuple[Fault, float], ...] = ()
    random_budget: int | None = None

    def matches(self, method: str, target: str) -> bool:
        return self.path_contains in target and self.method in (None, method.upper())

    def exhausted(self) -> bool:
        if self.generator is None:
            return not self.script
        return self.random_budget is not None and self.random_budget <= 0

    def take(self) -> Fault:
        """Return the fault for the next matching request; call only when not exhausted."""
        if self.generator is not None:
            if self.random_budget is not None:
                self.random_budget -= 1
            draw = self.generator.random()
            for fault, weight in self.weights:
                if draw < weight:
                    return fault
                draw -= weight
            return Fault.PASS
        fault = self.script[0]
        self.used_of_first += 1
        if self.used_of_first >= fault.times:
            self.script.pop(0)
            self.used_of_first = 0
        return fault


@dataclasses.dataclass(frozen=True)
class _Request:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


class _BadRequestError(Exception):
    """The client sent something this minimal parser does not accept."""


class FaultProxy:
    """An in-process HTTP/1.1 proxy on 127.0.0.1 (free port) that injects scripted faults.

    Args:
        upstream: Base URL of the real server, e.g. "http://127.0.0.1:5000".
        port: Port to listen on; 0 picks a free one.
        upstream_timeout: Bound on each upstream call, in seconds.
        idle_timeout: How long an idle keep-alive connection is kept open, in seconds.
    """

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        upstream_timeout: float = 120.0,
        idle_timeout: float = 60.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.stats = ProxyStats()
        self._port = port
        self._upstream_timeout = upstream_timeout
        self._idle_timeout = idle_timeout
        self._rules: list[_Rule] = []
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def url(self) -> str:
        """Base URL of the proxy, e.g. "http://127.0.0.1:54321"."""
        if self._server is None:
            raise RuntimeError("FaultProxy is not running; use it as `async with FaultProxy(...)`")
        return f"http://{_LOOPBACK}:{self._port}"

    async def __aenter__(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FaultProxy is already running")
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=self._upstream_timeout)
        # Forward the client's own headers only, not httpx's defaults.
        for name in ("Accept", "Accept-Encoding", "User-Agent"):
            del self._client.headers[name]
        self._server = await asyncio.start_server(self._accept, _LOOPBACK, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, abort every connection and in-flight request, close the client."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_SECONDS)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT_SECONDS)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def script(
        self, *, path_contains: str = "", faults: Sequence[Fault], method: str | None = None
    ) -> None:
        """Apply `faults`, in order, to the next requests whose target contains `path_contains`.

        Replaces any earlier script for the same `path_contains` and `method`. Rules are tried
        in the order they were first set; the first matching one with faults left wins.
        """
        self._set_rule(_Rule(path_contains, method and method.upper(), script=list(faults)))

    def script_random(
        self,
        *,
        path_contains: str = "",
        seed: int,
        weights: Mapping[Fault, float],
        method: str | None = None,
        max_requests: int | None = None,
    ) -> None:
        """Give each matching request a fault drawn with probability `weights[fault]`.

        The remaining probability passes through. The same seed and the same request order
        give the same faults. `Fault.times` is ignored here. After `max_requests` matching
        requests (if given) the rule is exhausted and requests pass through.
        """
        if any(weight < 0 for weight in weights.values()) or sum(weights.values()) > 1 + 1e-9:
            raise ValueError("weights must be non-negative and sum to at most 1")
        self._set_rule(
            _Rule(
                path_contains,
                method and method.upper(),
                generator=random.Random(seed),
                weights=tuple(weights.items()),
                random_budget=max_requests,
            )
        )

    def clear_scripts(self) -> None:
        """Drop every script: all requests pass through from now on."""
        self._rules.clear()

    @property
    def pending_faults(self) -> int:
        """How many scripted (non-random) faults have not been handed out yet."""
        return sum(
            sum(fault.times for fault in rule.script) - rule.used_of_first for rule in self._rules
        )

    def calls_per_second(self, path_contains: str = "", window: float = 1.0) -> float:
        """Return the peak rate of matching requests over a sliding `window` (see stats)."""
        return self.stats.calls_per_second(path_contains, window)

    async def wait_until_idle(self) -> None:
        """Wait until no request is in flight in the proxy (bound it with `asyncio.timeout`)."""
        await self._idle.wait()

    def _set_rule(self, rule: _Rule) -> None:
        for index, existing in enumerate(self._rules):
            if (existing.path_contains, existing.method) == (rule.path_contains, rule.method):
                self._rules[index] = rule
                return
        self._rules.append(rule)

    def _next_fault(self, request: _Request) -> Fault:
        for rule in self._rules:
            if rule.matches(request.method, request.target) and not rule.exhausted():
                return rule.take()
        return Fault.PASS

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task, not the one asyncio would make of a coroutine callback: on Python 3.11
        # that one logs an error when it ends cancelled, which `aclose` does on purpose.
        task = asyncio.create_task(self._serve_connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        self.stats.connections += 1
        try:
            for _ in range(_MAX_REQUESTS_PER_CONNECTION):
                request = await self._read_request(reader)
                if request is None or not await self._serve_request(request, reader, writer):
                    break
        except _BadRequestError as error:
            await self._write_response(
                writer, 400, (("Content-Type", "text/plain"),), str(error).encode(), False
            )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; its log entry already says so
        except Exception as error:  # a test-support server must not die silently
            self.stats.errors.append(repr(error))
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        """Read one request; None on a clean end of the connection or an idle timeout."""
        try:
            async with asyncio.timeout(self._idle_timeout):
                request_line = await reader.readline()
        except TimeoutError:
            return None
        if not request_line.endswith(b"\n"):
            return None
        try:
            method, target, version = request_line.decode("latin-1").split()
            headers: list[tuple[str, str]] = []
            for _ in range(_MAX_HEADER_LINES):
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, separator, value = line.decode("latin-1").partition(":")
                if not separator:
                    raise _BadRequestError(f"malformed header line {line!r}")
                headers.append((name.strip(), value.strip()))
            else:
                raise _BadRequestError("too many header lines")
        except ValueError as error:  # also raised by readline() past the buffer limit
            raise _BadRequestError(f"malformed request: {error}") from error
        request = _Request(method.upper(), target, version, tuple(headers), b"")
        if request.header("transfer-encoding") is not None:
            raise _BadRequestError("chunked request bodies are not supported")
        length = int(request.header("content-length") or 0)
        if not 0 <= length <= _MAX_BODY_BYTES:
            raise _BadRequestError(f"unsupported Content-Length {length}")
        return dataclasses.replace(request, body=await reader.readexactly(length))

    async def _serve_request(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Apply the next fault to `request`; return whether the connection stays open."""
        fault = self._next_fault(request)
        self._in_flight += 1
        self._idle.clear()
        entry = ProxyLogEntry(time.monotonic(), request.method, request.target, fault.kind)
        self.stats.log.append(entry)
        if fault.kind is not FaultKind.PASS:
            self.stats.injected[fault.kind.value] += 1
        if (status := fault.injected_status) is not None:
            self.stats.injected_statuses[status] += 1
            self.stats.injected_kind_statuses[fault.kind.value, status] += 1
        try:
            return await self._apply(fault, request, entry, reader, writer)
        finally:
            entry.finished = time.monotonic()
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _apply(
        self,
        fault: Fault,
        request: _Request,
        entry: ProxyLogEntry,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        keep_alive = request.keep_alive
        if fault.kind is FaultKind.RESET_BEFORE:
            _reset(writer)
            return False
        if not fault.forwards:
            return await self._respond(
                reader, writer, entry, fault.status_code, fault.headers, fault.body, keep_alive
            )
        upstream = await self._forward(request, entry, fault.kind is FaultKind.TRUNCATED_JSON)
        if upstream is None:
            body = f"FaultProxy: upstream failed: {entry.upstream_error}".encode()
            plain = (("Content-Type", "text/plain"),)
            return await self._respond(reader, writer, entry, 502, plain, body, keep_alive)
        status, headers, body = upstream
        if fault.kind is FaultKind.STATUS_AFTER:  # the upstream's answer is lost on the way
            status, headers, body = fault.status_code, fault.headers, fault.body
        if fault.kind is FaultKind.RESET_AFTER:
            _reset(writer)
            return False
        if fault.kind is FaultKind.DELAY and not await _hold(reader, writer, fault.seconds):
            entry.client_disconnected = True
            return False
        if fault.kind is FaultKind.TRUNCATED_JSON:
            body = body[: len(body) // 2]
        if fault.kind is FaultKind.TRICKLE:
            return await self._trickle(
                reader, writer, entry, status, headers, body, fault, keep_alive
            )
        return await self._respond(reader, writer, entry, status, headers, body, keep_alive)

    async def _forward(
        self, request: _Request, entry: ProxyLogEntry, identity: bool
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes] | None:
        """Send `request` upstream and read the whole response, however long the client waits."""
        assert self._client is not None
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        if identity:  # the body is about to be cut: it must be plain bytes
            headers = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]
            headers.append(("Accept-Encoding", "identity"))
        upstream_request = self._client.build_request(
            request.method, request.target, headers=headers, content=request.body
        )
        entry.forwarded = True
        self.stats.forwarded += 1
        try:
            response = await self._client.send(upstream_request, stream=True)
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            entry.upstream_error = repr(error)
            return None
        entry.upstream_status = response.status_code
        kept = tuple((k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP)
        return response.status_code, kept, body

    async def _respond(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        entry: ProxyLogEntry,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        keep_alive: bool,
    ) -> bool:
        if _client_gone(reader, writer):
            entry.client_disconnected = True
            return False
        await self._write_response(writer, status, headers, body, keep_alive)
        entry.response_status = status
        return keep_alive

    async def _trickle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        entry: ProxyLogEntry,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        fault: Fault,
        keep_alive: bool,
    ) -> bool:
        writer.write(_response_head(status, headers, len(body), keep_alive))
        await writer.drain()
        for offset in range(0, len(body), fault.chunk_bytes):
            if offset:
                await asyncio.sleep(fault.interval)
            if _client_gone(reader, writer):
                entry.client_disconnected = True
                return False
            writer.write(body[offset : offset + fault.chunk_bytes])
            await writer.drain()
        entry.response_status = status
        return keep_alive

    @staticmethod
    async def _write_response(
        writer: asyncio.StreamWriter,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        writer.write(_response_head(status, headers, len(body), keep_alive) + body)
        await writer.drain()


def _response_head(
    status: int, headers: tuple[tuple[str, str], ...], length: int, keep_alive: bool
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
    lines.append(f"Content-Length: {length}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection abruptly: with SO_LINGER 0 the kernel sends RST, not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> bool:
    """Wait `seconds`; return False early if the client closed the connection meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        if _client_gone(reader, writer):
            return False
        await asyncio.sleep(min(_DISCONNECT_POLL_SECONDS, remaining))
    return not _client_gone(reader, writer)


def _client_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the client closed its side (HTTP clients never half-close while waiting)."""
    return reader.at_eof() or writer.transport.is_closing()


class FaultProxyThread:
    """`FaultProxy` run in a background thread with its own event loop, for synchronous code.

    Use as `with FaultProxyThread(upstream) as proxy:`; `script`, `script_random` and
    `clear_scripts` are run on the proxy's loop; `stats` is the live (unsynchronised) object.
    """

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        upstream_timeout: float = 120.0,
        idle_timeout: float = 60.0,
    ) -> None:
        self._proxy = FaultProxy(
            upstream, port=port, upstream_timeout=upstream_timeout, idle_timeout=idle_timeout
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return self._proxy.url

    @property
    def stats(self) -> ProxyStats:
        """The proxy's live statistics."""
        return self._proxy.stats

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(_CLOSE_TIMEOUT_SECONDS * 2) or self._failure is not None:
            raise RuntimeError("FaultProxyThread failed to start") from self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_CLOSE_TIMEOUT_SECONDS * 2)

    def script(
        self, *, path_contains: str = "", faults: Sequence[Fault], method: str | None = None
    ) -> None:
        """See `FaultProxy.script`."""
        self._call(
            lambda: self._proxy.script(path_contains=path_contains, faults=faults, method=method)
        )

    def script_random(
        self,
        *,
        path_contains: str = "",
        seed: int,
        weights: Mapping[Fault, float],
        method: str | None = None,
        max_requests: int | None = None,
    ) -> None:
        """See `FaultProxy.script_random`."""
        self._call(
            lambda: self._proxy.script_random(
                path_contains=path_contains,
                seed=seed,
                weights=weights,
                method=method,
                max_requests=max_requests,
            )
        )

    def clear_scripts(self) -> None:
        """See `FaultProxy.clear_scripts`."""
        self._call(self._proxy.clear_scripts)

    def _call(self, function: Callable[[], None]) -> None:
        if self._loop is None:
            raise RuntimeError("FaultProxyThread is not running")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                function()
            except Exception as error:  # handed back to the calling thread
                done.set_exception(error)
            else:
                done.set_result(None)

        self._loop.call_soon_threadsafe(run)
        done.result(timeout=_CLOSE_TIMEOUT_SECONDS)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by __enter__
            self._failure = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._proxy:
            self._ready.set()
            await self._stop.wait()
