"""The ``mlm-export`` command line. Each subcommand imports its heavy modules only when it runs.

Exit codes: 0 success (every item valid), 1 an item is invalid or an error was reported, 2 usage error,
3 unexpected internal error (traceback printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from mlm_export import __version__
from mlm_export.errors import MLMExportError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def _cmd_validate(args: argparse.Namespace) -> int:
    from mlm_export.stac.validate import validate_item

    reports = [validate_item(path, args.schema_dir, check_files=not args.no_check_files) for path in args.files]
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
    validate.set_defaults(handler=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except MLMExportError as exc:
        if args.debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - unexpected: show the traceback, distinct exit code
        import traceback

        traceback.print_exc()
        code = EXIT_INTERNAL
    sys.exit(code)


if __name__ == "__main__":
    run()
