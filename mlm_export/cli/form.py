"""``mlm-export form``: serve the no-code metadata form on 127.0.0.1 until Ctrl-C (:mod:`mlm_export.form`)."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from typing import Any

from mlm_export.cli.provenance import memory_size
from mlm_export.errors import MissingDependencyError

EXIT_OK = 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``form`` subcommand to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "form",
        help="a local page that measures a model and asks only what no measurement can know",
        description="Serve a form on 127.0.0.1 (only): choose or upload a model file, see what was measured, "
        "fill in tasks, bands, scaling, classes, extent, license and citation with live validation, then download "
        "the Item (and its artifact), its model card, or publish it to a STAC API. The URL holds a secret token; "
        "temporary files are removed when the server stops (Ctrl-C).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    parser.add_argument(
        "--max-upload", type=memory_size, default=None, metavar="SIZE",
        help="largest model file the page may upload, e.g. 2GiB (default 4GiB); a path on this machine has no cap",
    )  # fmt: skip
    parser.set_defaults(handler=run_form)
    return parser


def _server(args: argparse.Namespace) -> Any:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"mlm-export form needs FastAPI and uvicorn ({exc.name} is missing).",
            hint="pip install 'mlm-export[form]'",
        ) from None
    from mlm_export.form.server import FormServer
    from mlm_export.form.session import DEFAULT_MAX_UPLOAD

    return FormServer(port=args.port, max_upload=args.max_upload or DEFAULT_MAX_UPLOAD)


def run_form(args: argparse.Namespace) -> int:
    """Print the URL (with its token), open it unless --no-browser, serve until Ctrl-C, remove the temporary files."""
    server = _server(args)
    print(f"mlm-export form: open {server.url}", flush=True)
    print("  (the token in the URL is this session's key; press Ctrl-C to stop and remove the temporary files)")
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C is how the form is stopped: not an error
        pass
    except SystemExit:  # SIGTERM (exit status 143), after the same cleanup
        print("mlm-export form: terminated; temporary files removed", file=sys.stderr)
        raise
    print("mlm-export form: stopped; temporary files removed", file=sys.stderr)
    return EXIT_OK


__all__ = ["add_parser", "run_form"]
