"""The ``mlm-export`` command line. Each subcommand imports its heavy modules only when it runs.

Exit codes: 0 success (every item valid), 1 an item is invalid or an error was reported, 2 usage error,
3 unexpected internal error (traceback printed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from mlm_export import __version__
from mlm_export.cli.messages import cli_text, route_warnings
from mlm_export.errors import MLMExportError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

#: Modules that register subcommands: each has ``add_parser(subparsers)`` that adds its parsers and sets
#: ``handler`` (a function of the parsed arguments returning the exit code). Add a module name here to add one.
COMMAND_MODULES: tuple[str, ...] = ("mlm_export.cli.model", "mlm_export.cli.predict")


def _cmd_validate(args: argparse.Namespace) -> int:
    from mlm_export.stac.validate import validate_item

    reports = [
        validate_item(path, args.schema_dir, check_files=not args.no_check_files, allow_outside=args.allow_outside)
        for path in args.files
    ]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for report in reports:
            if report.valid:
                print(f"valid    {report.location}")
            else:
                print(f"INVALID  {report.location}: {len(report.problems)} problem(s)")
                for problem in report.problems:
                    print(f"  - {problem}")
    return EXIT_OK if all(r.valid for r in reports) else EXIT_INVALID


def add_allow_outside(parser: argparse.ArgumentParser) -> None:
    """``--allow-outside DIR``: where an Item's local hrefs may point besides its own directory."""
    parser.add_argument(
        "--allow-outside", action="append", default=[], metavar="DIR",
        help="directory besides the item's own that its local hrefs may point into (repeatable)",
    )  # fmt: skip


def _cmd_catalog(args: argparse.Namespace) -> int:
    from mlm_export.stac.collection import build_catalog

    collection = build_catalog(
        args.items,
        args.output,
        collection_id=args.collection_id,
        title=args.title,
        description=args.description,
        overwrite=args.overwrite,
        validate=not args.no_validate,
        schema_dir=args.schema_dir,
        allow_outside=args.allow_outside,
    )
    count = sum(1 for link in collection.links if link.rel == "item")
    print(f"wrote {collection.get_self_href()}: collection {collection.id!r} with {count} model(s)")
    if args.cards:
        from mlm_export.cli.card import write_catalog_cards

        write_catalog_cards(collection.get_self_href(), args.schema_dir, args.allow_outside)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlm-export``."""
    parser = argparse.ArgumentParser(
        prog="mlm-export",
        description="Describe trained models as STAC Items with the MLM extension, and validate such Items.",
        epilog="Exit codes: 0 ok, 1 invalid item or reported error, 2 usage error, 3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"mlm-export {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of reported errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    _add_validate_parser(commands)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(commands)
    _add_catalog_parser(commands)

    from mlm_export.cli.stac import add_parsers as add_stac_parsers

    add_stac_parsers(commands)  # search, publish, serve-api

    from mlm_export.cli import card as cli_card

    cli_card.add_parser(commands)

    from mlm_export.cli import get as cli_get

    cli_get.add_parser(commands)  # get

    from mlm_export.cli import form as cli_form

    cli_form.add_parser(commands)  # form
    return parser


def _add_validate_parser(commands: Any) -> None:
    """``mlm-export validate FILE...``."""
    validate = commands.add_parser(
        "validate",
        help="validate STAC Items offline against the official schemas",
        description="Validate STAC Item JSON files against the STAC core schema of their stac_version, every "
        "schema in stac_extensions, and semantic checks (band/class counts, multihash, local files).",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="STAC Item JSON file(s)")
    validate.add_argument("--json", action="store_true", help="print a JSON report")
    validate.add_argument(
        "--schema-dir", default=None, help="offline schema directory (default: $MLM_EXPORT_SCHEMA_DIR or user cache)"
    )
    validate.add_argument("--no-check-files", action="store_true", help="do not hash local asset files")
    add_allow_outside(validate)
    validate.set_defaults(handler=_cmd_validate)


def _add_catalog_parser(commands: Any) -> None:
    """``mlm-export catalog ITEM... -o DIR``."""
    catalog = commands.add_parser(
        "catalog",
        help="write a self-contained STAC Collection of model Items",
        description="Copy model Items to DIR/<id>/<id>.json, place their local artifacts beside them (hard link "
        "or verified copy; never replacing a file) and write DIR/collection.json with their extent and summaries "
        "(tasks, frameworks, accelerators, bands).",
    )
    catalog.add_argument("items", nargs="+", metavar="ITEM", help="model Item JSON file(s)")
    catalog.add_argument("-o", "--output", required=True, metavar="DIR", help="catalog directory (created if missing)")
    catalog.add_argument("--id", dest="collection_id", default="mlm-models", help="Collection id (default: mlm-models)")
    catalog.add_argument("--title", help="Collection title")
    catalog.add_argument("--description", help="Collection description")
    catalog.add_argument("--overwrite", action="store_true", help="replace an existing catalog in DIR")
    catalog.add_argument("--schema-dir", help="offline schema directory")
    catalog.add_argument("--no-validate", action="store_true", help="do not validate the items before writing")
    catalog.add_argument("--cards", action="store_true", help="also write an HTML card per model and index.html")
    add_allow_outside(catalog)
    catalog.set_defaults(handler=_cmd_catalog)


def _report(exc: MLMExportError) -> None:
    print(f"error: {cli_text(exc.message)}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {cli_text(exc.hint)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 reported error, 2 usage; 3 only from :func:`run`)."""
    from mlm_export.cli.model import attach_dash_values

    parser = build_parser()
    args = parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else argv))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with route_warnings():
            return handler(args)
    except MLMExportError as exc:
        if args.debug:
            traceback.print_exc()
        _report(exc)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run(*, exit_fast: bool = False) -> None:
    """Console-script entry point.

    A closed output pipe (``mlm-export search ... | head -1``) ends the program quietly, as for other Unix tools.
    With ``exit_fast`` (the ``mlm-export`` and ``python -m mlm_export`` processes), the process ends once its
    threads and ``atexit`` handlers have run, without the interpreter's teardown of every module (torch's takes a
    few tenths of a second and writes nothing).
    """
    try:
        code = main()
        sys.stdout.flush()
    except SystemExit:
        raise
    except BrokenPipeError:
        # The reader went away: write nothing more (Python would complain again when flushing stdout at exit).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    except Exception:  # noqa: BLE001 - unexpected: show the traceback, distinct exit code
        traceback.print_exc()
        code = EXIT_INTERNAL
    if exit_fast:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """End the process with ``code`` as the interpreter would, less the teardown of the modules' objects.

    Non-daemon threads are joined and ``atexit`` handlers run (temporary directories, logging, whoever registered
    one), the standard streams flushed; then ``os._exit``. Returns (for ``sys.exit``) where a step is missing.
    """
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx runs first: joins non-daemon threads
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exit_functions is None:
        return
    shutdown()
    run_exit_functions()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def console() -> None:
    """The ``mlm-export`` console script: :func:`run` as the whole process."""
    run(exit_fast=True)


if __name__ == "__main__":
    console()
