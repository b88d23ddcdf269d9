"""A hostile STAC API for the tests: real loopback servers answering by route and recording request headers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRETS = {"Authorization": "Bearer tok-3f9a", "X-Api-Key": "key-77c1"}
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"

# A route answers (status, headers, body chunks); chunks may be a generator that sleeps between them.
Route = Callable[[str], tuple[int, dict[str, str], Any]]


class Host:
    """A loopback HTTP server answering by route (longest path prefix) and recording each request's headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                host.seen.append((self.command, self.path, dict(self.headers)))
                route = next((r for p, r in sorted(host.routes.items(), key=lambda x: -len(x[0]))
                              if self.path.startswith(p)), None)  # fmt: skip
                status, headers, body = route(self.path) if route else (404, {}, [b"{}"])
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def got_secrets(self) -> list[str]:
        """Paths of the requests that carried any of :data:`SECRETS` (name or value)."""
        return [
            path
            for _, path, headers in self.seen
            if any(k.lower() in {s.lower() for s in SECRETS} or v in SECRETS.values() for k, v in headers.items())
        ]

    def __enter__(self) -> Host:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def answer_json(document: Any) -> tuple[int, dict[str, str], list[bytes]]:
    return 200, {}, [json.dumps(document).encode()]


def item(number: int) -> dict[str, Any]:
    properties = {"datetime": "2020-01-01T00:00:00Z", "mlm:tasks": ["classification"]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": f"m{number}", "geometry": None, "links": [],
            "assets": {}, "properties": properties}  # fmt: skip


def root(search_href: str) -> dict[str, Any]:
    link = {"rel": "search", "href": search_href, "type": "application/geo+json", "method": "POST"}
    conforms = ["https://api.stacspec.org/v1.0.0/core", ITEM_SEARCH, ITEM_SEARCH + "#filter"]
    return {"type": "Catalog", "id": "api", "stac_version": "1.0.0", "description": "hostile", "conformsTo": conforms,
            "links": [link]}  # fmt: skip


def page(numbers: range, next_href: str | None) -> dict[str, Any]:
    links = [] if next_href is None else [{"rel": "next", "href": next_href, "method": "GET"}]
    return {"type": "FeatureCollection", "features": [item(n) for n in numbers], "links": links}


def endless(api: Host, per_page: int, delay: float = 0.0, last: int = 1000) -> dict[str, int]:
    """Make ``api`` a server whose every page links a next one (up to ``last`` pages, for the test's sake)."""
    served = {"pages": 0}

    def serve(path: str) -> tuple[int, dict[str, str], list[bytes]]:
        served["pages"] += 1
        time.sleep(delay)
        number = served["pages"]
        more = f"{api.url}/search?page={number + 1}" if number < last else None
        return answer_json(page(range(number * per_page, (number + 1) * per_page), more))

    api.routes["/"] = lambda p: answer_json(root(f"{api.url}/search"))
    api.routes["/search"] = serve
    return served
