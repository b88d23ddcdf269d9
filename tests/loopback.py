"""A real threaded HTTP server on 127.0.0.1 serving a directory, with redirects and a request count per path.

Used by the transfer tests and the download benchmark (which runs it in a sibling process: ``python loopback.py DIR``
prints the port, serves until killed).
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(SimpleHTTPRequestHandler):
    server: LoopbackServer  # type: ignore[assignment]

    def do_GET(self) -> None:
        if self.path.startswith("http://"):  # a request sent to us as a forward proxy: serve it from our directory
            self.server.proxied.append(self.path)
            self.path = "/" + self.path.split("://", 1)[1].split("/", 1)[-1]
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
            answers = self.server.sequence.get(path)
            if answers:  # serve the next file of the sequence (the last one repeats)
                self.path = answers.pop(0) if len(answers) > 1 else answers[0]
        if path in self.server.cut:
            self._send_cut(path, self.server.cut[path])
            return
        location = self.server.redirects.get(path)
        if location is not None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def _send_cut(self, path: str, sent: int) -> None:
        """Announce the whole file, send its first ``sent`` bytes, then hang up."""
        data = Path(self.translate_path(path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:sent])
        self.wfile.flush()
        self.close_connection = True

    def copyfile(self, source: Any, outputfile: Any) -> None:
        outputfile.flush()
        self.connection.sendfile(source)  # the kernel copies; the server stays cheap next to the client measured

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``directory`` on ``127.0.0.1:<free port>``; ``hits`` counts GETs per path, ``redirects`` maps a
    path to a ``Location``, ``cut`` maps a path to the number of bytes sent before hanging up, ``sequence`` maps a
    path to the files served for it in turn (the last one repeats: a server that answers differently each time).
    It also answers as a forward proxy (``http_proxy``), serving every URL from ``directory``; ``proxied`` lists
    those URLs."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), partial(_Handler, directory=str(directory)))
        self.hits: collections.Counter[str] = collections.Counter()
        self.redirects: dict[str, str] = {}
        self.cut: dict[str, int] = {}
        self.sequence: dict[str, list[str]] = {}
        self.proxied: list[str] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def served_in_child(directory: Path) -> Iterator[str]:
    """Serve ``directory`` from a sibling process and yield its URL (GDAL's reads hold the GIL, so a server thread
    of the reading process could never answer them); the process is stopped on exit."""
    child = subprocess.Popen([sys.executable, __file__, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield f"http://127.0.0.1:{int(child.stdout.readline())}"
    finally:
        child.terminate()
        child.wait(timeout=10)


def fetch_in_child(args: tuple[str, int, str, str]) -> str:
    """``fetch_artifact`` for a worker thread or a spawned process (this module imports quickly)."""
    from mlm_export.transfer import fetch_artifact

    url, size, checksum, cache = args
    return str(fetch_artifact(url, size=size, checksum=checksum, cache_dir=cache))


if __name__ == "__main__":
    server = LoopbackServer(Path(sys.argv[1]))
    print(server.server_address[1], flush=True)
    server.serve_forever()
