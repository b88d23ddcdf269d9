"""Serve the form on 127.0.0.1, and remove its temporary files when it stops.

The socket is bound first (so the port, and with it the allowed ``Host``, is known), uvicorn serves on it, and the
session's temporary files are removed when the server stops (Ctrl-C included).

:class:`FormServer` runs in the foreground (``mlm-export form``: :meth:`FormServer.run`) or in a thread (tests,
notebooks: ``with FormServer() as server: ...``).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

from mlm_export.errors import ConfigurationError
from mlm_export.form.session import DEFAULT_MAX_UPLOAD, FormSession

#: The only address the form listens on.
LOOPBACK = "127.0.0.1"


class FormServer:
    """The form's web server over one :class:`FormSession`.

    Attributes:
        session: the session (token, temporary directory, model).
        port: the port it listens on.
        url: the page's URL, token included (what the person opens).
    """

    def __init__(self, *, port: int = 0, max_upload: int = DEFAULT_MAX_UPLOAD) -> None:
        self.session = FormSession(max_upload=max_upload)
        try:
            self.socket = _bind(port)
        except BaseException:
            self.session.close()
            raise
        self.port = self.socket.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}/?token={self.session.token}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def hosts(self) -> tuple[str, ...]:
        """The ``Host`` header values the server answers (anything else is DNS rebinding)."""
        return (f"{LOOPBACK}:{self.port}", f"localhost:{self.port}")

    def _uvicorn(self) -> Any:
        import uvicorn

        from mlm_export.form.app import create_app

        app = create_app(self.session, self.hosts, lambda: self.port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        return self._server

    def run(self) -> None:
        """Serve until Ctrl-C (or SIGTERM), then remove the session's temporary files.

        uvicorn stops on either signal and then raises it again: Ctrl-C arrives as ``KeyboardInterrupt`` and
        SIGTERM as ``SystemExit(143)`` (not the default handler, which would end the process before the cleanup).

        Raises:
            KeyboardInterrupt: Ctrl-C stopped the server (after the cleanup).
        """
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self._uvicorn().run(sockets=[self.socket])
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.close()

    def start(self) -> FormServer:
        """Serve in a daemon thread; returns once the server accepts connections (at most 30 s)."""
        server = self._uvicorn()
        server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            self.close()
            raise ConfigurationError("The form's server did not start.", hint="Run it again (see the log above).")
        return self

    def close(self) -> None:
        """Stop the server (a thread started by :meth:`start`), close the socket, remove the temporary files."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.socket.close()
        self.session.close()

    def __enter__(self) -> FormServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"Cannot listen on {LOOPBACK}:{port} ({exc.strerror}).", hint="Choose another --port, or 0 for a free one."
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock
