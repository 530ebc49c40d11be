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
the work.

What a fault is (`Fault`, `FaultKind`) lives in `tests.support.faults`; which fault each
request gets and what the proxy recorded (the scripts, `ProxyLogEntry`, `ProxyStats`: pure) in
`tests.support.fault_rules`. The four are re-exported here. Loopback only; not thread-safe:
from synchronous code use `FaultProxyThread` (`tests.support.fault_proxy_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import time
from http import HTTPStatus
from types import TracebackType
from typing import Self

import httpx

from tests.support.fault_rules import FaultScripts, ProxyLogEntry, ProxyStats
from tests.support.faults import Fault, FaultKind

__all__ = [
    "CLOSE_TIMEOUT_SECONDS",
    "Fault",
    "FaultKind",
    "FaultProxy",
    "ProxyLogEntry",
    "ProxyStats",
]

_LOOPBACK = "127.0.0.1"
_MAX_HEADER_LINES = 200
_MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_REQUESTS_PER_CONNECTION = 100_000
_DISCONNECT_POLL_SECONDS = 0.02
CLOSE_TIMEOUT_SECONDS = 5.0
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


class FaultProxy(FaultScripts):
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
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.stats = ProxyStats()
        self._port = port
        self._upstream_timeout = upstream_timeout
        self._idle_timeout = idle_timeout
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
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECONDS)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT_SECONDS)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def calls_per_second(self, path_contains: str = "", window: float = 1.0) -> float:
        """Return the peak rate of matching requests over a sliding `window` (see stats)."""
        return self.stats.calls_per_second(path_contains, window)

    async def wait_until_idle(self) -> None:
        """Wait until no request is in flight in the proxy (bound it with `asyncio.timeout`)."""
        await self._idle.wait()

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
        fault = self._next_fault(request.method, request.target)
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
