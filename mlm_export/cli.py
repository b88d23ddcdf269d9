"""The ``mlm-export`` command line. Each subcommand imports its heavy modules only when it runs.

Exit codes: 0 success (every item valid), 1 an item is invalid or an error was reported, 2 usage error,
3 unexpected internal error (traceback printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export import __version__
from mlm_export.cli_provenance import add_provenance_arguments, provenance_options
from mlm_export.errors import ConfigurationError, MLMExportError, OutputExistsError

if TYPE_CHECKING:
    from mlm_export.description import ModelDescription

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


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


def _add_allow_outside(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-outside", action="append", default=[], metavar="DIR",
        help="directory besides the item's own that its local hrefs may point into (repeatable)",
    )  # fmt: skip


def _cmd_check(args: argparse.Namespace) -> int:
    from mlm_export.loading import check_item

    kwargs = _json_object(args.model_kwargs, "--model-kwargs") if args.model_kwargs else None
    with _status(f"Loading and running {args.item}"):
        report = check_item(
            args.item,
            asset_key=args.asset,
            model_class=args.model_class,
            model_kwargs=kwargs,
            trust_pickle=args.trust_pickle,
            device=args.device,
            **_limit_options(args),
            verify=not args.no_verify,
            allow_outside=args.allow_outside,
        )
    print(report)
    return EXIT_OK if report.ok else EXIT_INVALID


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
        from mlm_export.cli_card import write_catalog_cards

        write_catalog_cards(collection.get_self_href(), args.schema_dir, args.allow_outside)
    return EXIT_OK


def _json_object(text: str, option: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object for ``option``."""
    hint = f"Write e.g. {option} '{{\"num_classes\": 10}}'."
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{option} is not JSON: {exc.msg}.", hint=hint) from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"{option} must be a JSON object, got {type(value).__name__}.", hint=hint)
    return value


def _parse_shape(text: str) -> list[int]:
    """``-1,13,64,64`` / ``?,13,64,64`` / ``1x13x64x64`` -> list of ints (``?`` = -1)."""
    parts = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    try:
        return [-1 if p in ("?", "-1", "*") else int(p) for p in parts]
    except ValueError as exc:
        raise ConfigurationError(
            f"--input-shape {text!r} is not a list of integers.", hint="Write e.g. --input-shape=-1,13,64,64."
        ) from exc


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of export_item/inspect_model from the shared options."""
    options: dict[str, Any] = {
        "device": args.device,
        "trust_pickle": args.trust_pickle,
        "model_class": args.model_class,
        "probe_dynamic": not args.no_probe,
        **_limit_options(args),
    }
    if args.input_shape:
        shapes = [_parse_shape(s) for s in args.input_shape]
        options["input_shape"] = shapes[0] if len(shapes) == 1 else shapes
    if args.input_dtype:
        options["input_dtype"] = args.input_dtype
    if args.model_kwargs:
        options["model_kwargs"] = _json_object(args.model_kwargs, "--model-kwargs")
    for key in ("tasks", "bands", "classes", "name"):
        value = getattr(args, key)
        if value:
            options[key] = value
    return options


def _limit_options(args: argparse.Namespace) -> dict[str, Any]:
    """max_dry_run_memory / dry_run_timeout from --max-dry-run-memory / --dry-run-timeout (0: no limit)."""
    options: dict[str, Any] = {}
    if args.max_dry_run_memory is not None:
        options["max_dry_run_memory"] = args.max_dry_run_memory
    if args.dry_run_timeout is not None:
        options["dry_run_timeout"] = args.dry_run_timeout if args.dry_run_timeout > 0 else None
    return options


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-dry-run-memory", metavar="SIZE", help="cap on the dry-run's peak memory, e.g. 8GB")
    parser.add_argument("--dry-run-timeout", type=float, metavar="SECONDS", help="dry-run time limit (0: none)")


def _cmd_export(args: argparse.Namespace) -> int:
    from mlm_export.hashing import start_background

    start_background(args.path)  # before torch/onnx/pystac are imported: the hash runs beside the imports
    from mlm_export.api import export_item
    from mlm_export.stac.writer import save_item

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputExistsError(f"Output '{output}' already exists.", hint="Pass --overwrite or choose another -o.")
    options = _model_options(args)
    extent: dict[str, Any] = {}
    if args.bbox:
        extent["bbox"] = args.bbox
    if args.datetime:
        extent["datetime"] = args.datetime
    if args.start or args.end:
        extent["start_datetime"], extent["end_datetime"] = args.start, args.end
    with _status(f"Measuring {args.path}"):
        item = export_item(
            args.path,
            **options,
            **extent,
            item_id=args.item_id,
            collection=args.collection,
            description=args.description,
            href_base=args.href_base,
            progress=False if args.no_progress else None,
            schema_dir=args.schema_dir,
            **provenance_options(args),
        )
    path = save_item(item, output, overwrite=args.overwrite)
    props = item.properties
    print(f"wrote {path}")
    print(
        f"  {props['mlm:name']}: {props.get('mlm:framework')} {props.get('mlm:framework_version', '')}, "
        f"{props.get('mlm:total_parameters', '?')} parameters, tasks {', '.join(props['mlm:tasks'])}"
    )
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from mlm_export.api import inspect_model

    with _status(f"Measuring {args.path}"):
        described = inspect_model(args.path, **_model_options(args))
    if args.json:
        print(json.dumps(described.to_dict(), indent=2))
        return EXIT_OK
    _print_description(described)
    return EXIT_OK


def _rows(described: ModelDescription) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for kind, specs in (("input", described.inputs), ("output", described.outputs)):
        for spec in specs:
            dynamic = [name for size, name in zip(spec.shape, spec.dim_order, strict=True) if size == -1]
            rows.append(
                (
                    kind,
                    spec.name,
                    "[" + ", ".join(str(s) for s in spec.shape) + "]",
                    ", ".join(spec.dim_order),
                    spec.data_type,
                    ", ".join(dynamic) or "-",
                )
            )
    return rows


def _human_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{size} B"


def _print_description(described: ModelDescription) -> None:
    header = ("", "name", "shape", "dim_order", "data_type", "dynamic")
    summary = [
        ("name", described.name),
        ("architecture", described.architecture),
        ("framework", f"{described.framework or '?'} {described.framework_version or ''}".strip()),
        ("tasks", ", ".join(described.tasks) or "-"),
        ("parameters", f"{described.total_parameters} total, {described.trainable_parameters} trainable"),
        ("memory", _human_bytes(described.memory_size)),
        ("accelerator", described.accelerator or "-"),
    ]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        for key, value in summary:
            console.print(f"[bold]{key:>12}[/bold]  {value}")
        table = Table(*header)
        for row in _rows(described):
            table.add_row(*row)
        console.print(table)
    else:
        for key, value in summary:
            print(f"{key:>12}  {value}")
        rows = [header, *_rows(described)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for note in described.notes:
        print(f"note: {note}")


@contextlib.contextmanager
def _status(message: str) -> Iterator[None]:
    """A spinner on a terminal while long work (loading, dry-runs) runs; nothing otherwise."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(message):
            yield
    else:
        yield


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="model file (.pt, .pth, .ckpt, .safetensors, .pt2, .onnx)")
    parser.add_argument(
        "--input-shape",
        action="append",
        metavar="SHAPE",
        help="input shape, e.g. --input-shape=-1,13,64,64 (-1 or ? = dynamic); repeat for several inputs",
    )
    parser.add_argument("--input-dtype", help="input dtype, e.g. float32 (default) or int64")
    parser.add_argument("--tasks", nargs="+", help="MLM tasks (default: inferred from the outputs)")
    parser.add_argument("--bands", nargs="+", help="band names of the input, in channel order")
    parser.add_argument("--classes", nargs="+", help="class names, in output channel order")
    parser.add_argument("--name", help="mlm:name (default: the model's class or file name)")
    parser.add_argument("--device", default="cpu", help="dry-run device: cpu (default), cuda, cuda:1")
    parser.add_argument("--model-class", metavar="PKG.MOD:CLASS", help="class that rebuilds a model from weights")
    parser.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments of --model-class, as JSON")
    parser.add_argument("--trust-pickle", action="store_true", help="allow unpickling code (trusted files only)")
    parser.add_argument("--no-probe", action="store_true", help="one dry-run only; no dynamic-dimension search")
    _add_limit_options(parser)


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
    _add_allow_outside(validate)
    validate.set_defaults(handler=_cmd_validate)

    export = commands.add_parser(
        "export",
        help="measure a model file and write its STAC Item",
        description="Load the model, dry-run it, hash it, and write a validated MLM STAC Item.",
    )
    _add_model_options(export)
    export.add_argument("-o", "--output", required=True, metavar="ITEM_JSON", help="where to write the item")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    export.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="WGS84 extent")
    when = export.add_mutually_exclusive_group()
    when.add_argument("--datetime", help="ISO 8601 date-time of the item")
    when.add_argument("--start", help="start of the temporal extent (with --end)")
    export.add_argument("--end", help="end of the temporal extent (with --start)")
    export.add_argument("--item-id", help="Item id (default: slug of the name)")
    export.add_argument("--collection", help="collection id to record on the item")
    export.add_argument("--description", help="item description")
    export.add_argument("--href-base", metavar="URL", help="public URL prefix of the artifacts")
    export.add_argument("--schema-dir", help="offline schema directory")
    export.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_provenance_arguments(export)
    export.set_defaults(handler=_cmd_export)

    inspect = commands.add_parser(
        "inspect",
        help="print a model's inputs, outputs, parameters and memory without writing anything",
        description="Measure a model file and print its description as a table (or --json).",
    )
    _add_model_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print the model description as JSON")
    inspect.set_defaults(handler=_cmd_inspect)
    check = commands.add_parser(
        "check",
        help="load an item's model (checksum verified), run it, compare outputs with the item",
        description="Verify the mlm:model file's size and checksum, load it by mlm:artifact_type, run it on inputs "
        "built from mlm:input and check every mlm:output's shape and dtype. Exit 0 when all match, 1 otherwise.",
    )
    check.add_argument("item", metavar="ITEM_JSON", help="the item to check")
    check.add_argument("--asset", help="asset key to load (default: the first mlm:model asset)")
    check.add_argument("--model-class", metavar="PKG.MOD:CLASS", help="class that rebuilds a model from weights")
    check.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments of --model-class, as JSON")
    check.add_argument("--trust-pickle", action="store_true", help="allow unpickling code (trusted files only)")
    check.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1")
    _add_limit_options(check)
    check.add_argument("--no-verify", action="store_true", help="load a model file the item gives no checksum for")
    _add_allow_outside(check)
    check.set_defaults(handler=_cmd_check)

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
    _add_allow_outside(catalog)
    catalog.set_defaults(handler=_cmd_catalog)

    from mlm_export.cli_stac import add_parsers as add_stac_parsers

    add_stac_parsers(commands)  # search, publish, serve-api

    from mlm_export import cli_card

    cli_card.add_parser(commands)

    from mlm_export import cli_get

    cli_get.add_parser(commands)  # get
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
