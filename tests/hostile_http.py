"""A hostile HTTP server on 127.0.0.1 for download-bound tests: endless, trickling, stalling and held bodies.

Every body is bounded: it ends when the test's ``with`` block ends (``stop`` is set), when the client hangs up, or
after ``MAX_SECONDS``, so no test can hang on it. ``sent`` counts the body bytes written per path.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Longest any hostile body runs, whatever the test does.
MAX_SECONDS = 20.0

Route = Callable[["_Handler"], None]


class _Handler(BaseHTTPRequestHandler):
    server: HostileServer  # type: ignore[assignment]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
        route = self.server.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what the tests want

    def head(self, length: int | None) -> None:
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.close_connection = True
        self.end_headers()

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        with self.server.lock:
            self.server.sent[self.path] += len(data)

    def running(self, started: float) -> bool:
        return not self.server.stop.is_set() and time.monotonic() - started < MAX_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HostileServer(ThreadingHTTPServer):
    """Serves ``routes`` (path -> function of the request handler) on ``127.0.0.1:<free port>``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()
        self.stop = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


def static(data: bytes) -> Route:
    """An ordinary body."""

    def route(handler: _Handler) -> None:
        handler.head(len(data))
        handler.send(data)

    return route


def endless(block: bytes = b"\0" * 65536, *, length: int | None = None) -> Route:
    """A body that never ends (``length``: a Content-Length to announce, else none)."""

    def route(handler: _Handler) -> None:
        handler.head(length)
        started = time.monotonic()
        while handler.running(started):
            handler.send(block)

    return route


def trickle(length: int, *, every: float = 0.02, step: int = 1, first: bytes = b"") -> Route:
    """``first`` at once, then ``step`` bytes every ``every`` seconds of an announced ``length``."""

    def route(handler: _Handler) -> None:
        handler.head(length)
        handler.send(first)
        started, count = time.monotonic(), len(first)
        while handler.running(started) and count < length:
            handler.send(b"x" * step)
            count += step
            handler.server.stop.wait(every)

    return route


def held(data: bytes, sent_first: int) -> Route:
    """The first ``sent_first`` bytes of ``data``, then nothing until ``server.release`` is set, then the rest."""

    def route(handler: _Handler) -> None:
        handler.head(len(data))
        handler.send(data[:sent_first])
        handler.server.release.wait(MAX_SECONDS)
        if not handler.server.stop.is_set():
            handler.send(data[sent_first:])

    return route
