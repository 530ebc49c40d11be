"""Small real servers that are not MLflow: a web server answering one fixed page, over plain
HTTP or TLS with a self-signed certificate, each in a thread (no mlflow needed).

They stand for what a tracking URI may point at by mistake: a plain web server (its HTML
404), a proxy's page, an SSO login page (a 200 page, or a redirect), a TLS port.
"""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["Page", "page_server", "self_signed_cert"]


@dataclass(frozen=True)
class Page:
    """The one answer a :func:`page_server` gives to every request."""

    status: int = 404
    content_type: str = "text/html"
    body: str = "<html><head><title>404 Not Found</title></head><body>nope</body></html>"
    headers: dict[str, str] = field(default_factory=dict)


def _handler(page: Page, seen: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = page.body.encode()
            self.send_response(page.status)
            self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in page.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read what was asked from ``seen``."""

    return Handler


@contextmanager
def page_server(
    page: Page, *, cert: tuple[Path, Path] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 answering ``page`` to everything; yields its URL and the
    requests it saw (``"GET /api/..."``). With ``cert`` (certificate, key) it speaks TLS."""
    seen: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(page, seen))
    scheme = "http"
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl CLI (the
    test is skipped without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
