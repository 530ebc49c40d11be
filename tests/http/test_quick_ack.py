"""The network transport asks for an immediate TCP acknowledgement before every read."""

from __future__ import annotations

import socket
import ssl
import threading
import typing
from asyncio.trsock import TransportSocket
from collections.abc import Iterator

import httpcore
import httpx
import pytest

from async_trace_delete._quick_ack import QuickAckBackend, network_transport

pytestmark = [
    pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only"),
    pytest.mark.asyncio,
]


class _RecordingSocket(socket.socket):
    """A real TCP socket that records the options set on it."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.options: list[tuple[int, int]] = []

    def setsockopt(self, level: int, option: int, value: typing.Any, *rest: typing.Any) -> None:
        self.options.append((level, option))
        super().setsockopt(level, option, value, *rest)


class _FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.reads = 0
        self.tls_started = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.reads += 1
        return b"x"

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.tls_started = True
        return _FakeStream(self.sock)

    def get_extra_info(self, info: str) -> typing.Any:
        return self.sock if info == "socket" else None


class _FakeBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, stream: _FakeStream) -> None:
        self.stream = stream

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return self.stream


QUICKACK = (socket.IPPROTO_TCP, getattr(socket, "TCP_QUICKACK", -1))


@pytest.fixture
def recording_socket() -> Iterator[_RecordingSocket]:
    sock = _RecordingSocket()
    try:
        yield sock
    finally:
        sock.close()


async def test_every_read_sets_quickack_again(recording_socket: _RecordingSocket) -> None:
    """Each read is preceded by TCP_QUICKACK: the option is not sticky in the kernel."""
    inner = _FakeStream(recording_socket)
    stream = await QuickAckBackend(_FakeBackend(inner)).connect_tcp("127.0.0.1", 1)
    for _ in range(3):
        assert await stream.read(10) == b"x"
    assert inner.reads == 3
    assert recording_socket.options == [QUICKACK] * 3


async def test_a_tls_stream_keeps_setting_quickack(recording_socket: _RecordingSocket) -> None:
    """The stream after start_tls still asks for quick acknowledgements."""
    inner = _FakeStream(recording_socket)
    stream = await QuickAckBackend(_FakeBackend(inner)).connect_tcp("127.0.0.1", 1)
    tls = await stream.start_tls(ssl.create_default_context())
    await tls.read(10)
    assert inner.tls_started
    assert recording_socket.options == [QUICKACK]


async def test_a_stream_without_socket_reads_plainly() -> None:
    """No socket to set the option on (an in-memory stream): the read goes on."""
    inner = _FakeStream(None)
    stream = await QuickAckBackend(_FakeBackend(inner)).connect_tcp("127.0.0.1", 1)
    assert await stream.read(10) == b"x"


async def test_a_closed_socket_does_not_fail_the_read() -> None:
    """setsockopt on a closed socket fails; the read itself reports what happened."""
    sock = _RecordingSocket()
    sock.close()
    stream = await QuickAckBackend(_FakeBackend(_FakeStream(sock))).connect_tcp("127.0.0.1", 1)
    assert await stream.read(10) == b"x"


def _serve_twice(listener: socket.socket, seen: list[bytes]) -> None:
    connection, _ = listener.accept()
    with connection:
        for _ in range(2):
            seen.append(connection.recv(65536))
            body = b'{"ok": true}'
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            connection.sendall(head + b"content-length: %d\r\n\r\n" % len(body))
            connection.sendall(body)  # a second send, as uvicorn does


async def test_network_transport_speaks_http_over_one_kept_alive_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The transport is httpx's own: two requests, one connection, answers read whole, and
    every read of the real asyncio socket sets TCP_QUICKACK first."""
    options: list[tuple[int, int]] = []
    real_setsockopt = TransportSocket.setsockopt

    def recording(self: TransportSocket, *args: typing.Any) -> None:
        options.append((args[0], args[1]))
        real_setsockopt(self, *args)

    monkeypatch.setattr(TransportSocket, "setsockopt", recording)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []
    thread = threading.Thread(target=_serve_twice, args=(listener, seen), daemon=True)
    thread.start()
    try:
        transport = network_transport(verify=True)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as c:
            first = await c.get("/one")
            second = await c.get("/two")
        assert first.json() == second.json() == {"ok": True}
    finally:
        thread.join(timeout=5)
        listener.close()
    assert [request.split(b" ")[1] for request in seen] == [b"/one", b"/two"]
    assert options.count(QUICKACK) >= 2  # at least one read per answer


async def test_network_transport_wraps_httpcores_backend() -> None:
    """The pool's backend is ours, around httpcore's own (the module's one private reach)."""
    transport = network_transport(verify=False)
    backend = transport._pool._network_backend
    assert isinstance(backend, QuickAckBackend)
