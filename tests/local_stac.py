"""The local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac) for the tests, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mlm_export.stac.local_api import LocalSTACAPI, start_local_api

#: Tests that talk to the local server mark themselves with this (pytest-socket: loopback only).
LOOPBACK = pytest.mark.allow_hosts(["127.0.0.1"])


@pytest.fixture(scope="session")
def stac_api() -> Iterator[LocalSTACAPI]:
    """A running local STAC API on 127.0.0.1, stopped (and its database removed) at the end of the session."""
    with start_local_api() as api:
        yield api


class GatedProxy:
    """A real loopback HTTP server in front of the STAC API that demands a token and can fail bulk requests with 500.

    Attributes:
        url: the proxy's root URL.
        token: the bearer token it accepts (``None``: no auth needed).
        fail_bulk_after: answer 500 to every bulk request after this many have passed (``None``: never).
        refuse_bulk_with: answer 400, half a second late, to a bulk request holding this Item id (``None``: never).
        bulk_requests: bulk requests seen, failed ones included.
        requests: ``"METHOD /path"`` of every request seen, in order.
    """

    def __init__(
        self, upstream: str, *, token: str | None = None, fail_bulk_after: int | None = None,
        refuse_bulk_with: str | None = None,
    ) -> None:  # fmt: skip
        import http.server
        import threading
        import time

        import httpx

        self.token, self.fail_bulk_after, self.bulk_requests = token, fail_bulk_after, 0
        self.refuse_bulk_with = refuse_bulk_with
        self.requests: list[str] = []
        proxy = self
        client = httpx.Client(base_url=upstream, timeout=60)

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                given = self.headers.get("Authorization")
                if proxy.token is not None and given is None:
                    return self._answer(401, b'{"detail": "Not authenticated"}')
                if proxy.token is not None and given != f"Bearer {proxy.token}":
                    return self._answer(403, b'{"detail": "Forbidden"}')
                if self.path.endswith("/bulk_items"):
                    proxy.bulk_requests += 1
                    if proxy.fail_bulk_after is not None and proxy.bulk_requests > proxy.fail_bulk_after:
                        return self._answer(500, b'{"code": "InternalError", "description": "database is down"}')
                    if proxy.refuse_bulk_with is not None and f'"{proxy.refuse_bulk_with}"'.encode() in (body or b""):
                        time.sleep(0.5)  # the next chunk, sent meanwhile, lands first
                        return self._answer(400, b'{"code": "BadRequest", "description": "refused"}')
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                answer = client.request(self.command, self.path, content=body, headers=headers)
                self._answer(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client = client

    def __enter__(self) -> GatedProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.client.close()


def without_nulls(value: Any) -> Any:
    """``value`` as pgstac stores it: ``null`` members of objects dropped (at every depth)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
