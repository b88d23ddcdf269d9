"""``mlm-export export``, ``inspect`` and ``check``: the subcommands that load and run a model.

Each handler imports the heavy modules (torch, onnx) only when it runs. Usage errors (bad JSON, shapes, dtypes)
are found by ``argparse`` types and exit 2 before anything is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.errors import OutputError, OutputExistsError

if TYPE_CHECKING:
    from mlm_export.description import ModelDescription

EXIT_OK, EXIT_INVALID = 0, 1

#: dtype names ``--input-dtype`` accepts (checked without importing torch).
INPUT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
#: ``--artifact-format`` values (export_item's ``artifact_format``).
ARTIFACT_FORMATS = ("safetensors", "torch.save", "torchscript", "torch.export", "onnx")
#: Fields ``--none-applies`` may name.
NULLABLE_FIELDS = ("value_scaling", "resize_type", "pre_processing_function", "post_processing_function")


# --- argparse types (a ValueError/ArgumentTypeError here is a usage error: exit 2) ---------------------------------


def json_object(text: str) -> dict[str, Any]:
    """A JSON object argument (``--model-kwargs``, ``--hyperparameters``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not JSON ({exc.msg}): {text!r}; write e.g. '{{\"num_classes\": 10}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def json_scaling(text: str) -> Any:
    """``--value-scaling``: ``none``, a JSON list of value_scaling objects, or a JSON object by input name."""
    if text.strip().lower() == "none":
        return "none"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f'not JSON ({exc.msg}); write e.g. \'[{{"type": "scale", "value": 0.0001}}]\' or none'
        ) from None
    if isinstance(value, dict) and "type" in value:
        value = [value]
    if not isinstance(value, (list, dict)):
        raise argparse.ArgumentTypeError("must be a JSON list of value_scaling objects, or an object by input name")
    return value


def shape_part(text: str) -> list[int]:
    """One ``--input-shape`` token: ``-1,13,64,64``, ``=-1,13,64,64``, ``[-1,13,64,64]``, ``1x13x64x64``, ``-1``."""
    cleaned = text.strip().lstrip("=").strip("[]()")
    parts = [p for p in re.split(r"[,x\s]+", cleaned) if p]
    try:
        values = [-1 if p in ("?", "*") else int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of integers; write e.g. --input-shape=-1,13,64,64"
        ) from None
    if not values or any(v < -1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes are integers >= 0, or -1 (dynamic)")
    return values


#: Options whose value may start with a dash and a digit (``--input-shape -1,13,64,64``).
DASH_VALUE_OPTIONS = ("--input-shape",)
_DASH_DIGIT = re.compile(r"-\d")
_NEGATIVE_NUMBER = re.compile(r"-\d+")


def attach_dash_values(argv: Sequence[str]) -> list[str]:
    """``--input-shape -1,13,64,64`` as ``--input-shape=-1,13,64,64``.

    argparse takes a token that starts with ``-`` for an option unless it is a plain number (``-1``), so it would
    say "expected at least one argument"; the token after ``--input-shape`` that starts with ``-<digit>`` is its value.
    """
    joined: list[str] = []
    for token in argv:
        if (
            joined
            and joined[-1] in DASH_VALUE_OPTIONS
            and _DASH_DIGIT.match(token)
            and not _NEGATIVE_NUMBER.fullmatch(token)
        ):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def _shapes(groups: list[list[list[int]]] | None) -> list[list[int]]:
    """One shape per ``--input-shape`` occurrence (its tokens joined: ``-1 7 100 100`` is one shape)."""
    return [[size for token in group for size in token] for group in groups or []]


def _by_input(values: list[str] | None) -> Any:
    """``--bands B02 B03`` -> a list; ``--bands optical=B02,B03 sar=VV,VH`` -> a mapping by input name."""
    if not values:
        return None
    if not any("=" in v for v in values):
        return list(values)
    mapping: dict[str, list[str]] = {}
    for value in values:
        name, sep, names = value.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{value!r}: write INPUT=NAME,NAME,... for every input")
        mapping[name] = [n for n in names.split(",") if n]
    return mapping


# --- options shared by export and inspect ----------------------------------------------------------------------------


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how to load and dry-run a model file."""
    parser.add_argument("path", help="model file (.pt, .pth, .ckpt, .safetensors, .pt2, .onnx)")
    parser.add_argument(
        "--input-shape", action="append", nargs="+", type=shape_part, metavar="SHAPE",
        help="input shape: --input-shape=-1,13,64,64, [-1,13,64,64] or -1 13 64 64 (-1 = dynamic); "
        "repeat for several inputs",
    )  # fmt: skip
    parser.add_argument("--input-dtype", choices=INPUT_DTYPES, help="input dtype (default float32)")
    parser.add_argument("--tasks", nargs="+", help="MLM tasks (default: inferred from the outputs)")
    parser.add_argument(
        "--bands", nargs="+", help="band names in channel order; for several inputs INPUT=B1,B2 per input"
    )
    parser.add_argument("--classes", nargs="+", help="class names, in output channel order")
    parser.add_argument("--name", help="mlm:name (default: the item id)")
    parser.add_argument("--device", default="cpu", help="dry-run device: cpu (default), cuda, cuda:1")
    parser.add_argument("--model-class", metavar="PKG.MOD:CLASS", help="class that rebuilds a model from weights")
    parser.add_argument("--model-kwargs", type=json_object, metavar="JSON", help="keyword arguments, as JSON")
    parser.add_argument("--trust-pickle", action="store_true", help="allow unpickling code (trusted files only)")
    parser.add_argument("--no-probe", action="store_true", help="one dry-run only; no dynamic-dimension search")
    add_limit_options(parser)


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """``--max-dry-run-memory`` / ``--dry-run-timeout``: the caps on every dry-run (export, inspect, check)."""
    parser.add_argument("--max-dry-run-memory", metavar="SIZE", help="cap on the dry-run's peak memory, e.g. 8GB")
    parser.add_argument("--dry-run-timeout", type=float, metavar="SECONDS", help="dry-run time limit (0: none)")


def limit_options(args: argparse.Namespace) -> dict[str, Any]:
    """max_dry_run_memory / dry_run_timeout from --max-dry-run-memory / --dry-run-timeout (0: no limit)."""
    options: dict[str, Any] = {}
    if args.max_dry_run_memory is not None:
        options["max_dry_run_memory"] = args.max_dry_run_memory
    if args.dry_run_timeout is not None:
        options["dry_run_timeout"] = args.dry_run_timeout if args.dry_run_timeout > 0 else None
    return options


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of export_item/inspect_model from the shared options."""
    options: dict[str, Any] = {
        "device": args.device,
        "trust_pickle": args.trust_pickle,
        "model_class": args.model_class,
        "probe_dynamic": not args.no_probe,
        **limit_options(args),
    }
    shapes = _shapes(args.input_shape)
    if shapes:
        options["input_shape"] = shapes[0] if len(shapes) == 1 else shapes
    if args.input_dtype:
        options["input_dtype"] = args.input_dtype
    if args.model_kwargs is not None:
        options["model_kwargs"] = args.model_kwargs
    bands = _by_input(args.bands)
    if bands is not None:
        options["bands"] = bands
    for key in ("tasks", "classes", "name"):
        value = getattr(args, key)
        if value:
            options[key] = value
    return options


# --- export ------------------------------------------------------------------------------------------------------


def _check_output(output: Path, overwrite: bool) -> list[Path]:
    """Before any dry-run: refuse an existing output, create a missing directory, check it is writable.

    Returns:
        The directories it created, deepest first (removed again when the export fails or is interrupted).
    """
    if output.exists() and not overwrite:
        raise OutputExistsError(f"Output '{output}' already exists.", hint="Pass --overwrite or choose another -o.")
    from mlm_export.stac.writer import make_parent_directory

    directory = output.parent if str(output.parent) else Path(".")
    created = [d for d in (directory, *directory.parents) if not d.exists()]
    make_parent_directory(output)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write in '{directory}' (permission denied).", hint="Choose another -o.")
    return created


def _remove_empty(directories: list[Path]) -> None:
    """Remove the directories this run created, deepest first, as long as they are empty (never anything else)."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:  # not empty (something else wrote there), or gone: leave it and what is above it
            return


def _publisher_options(args: argparse.Namespace) -> dict[str, Any]:
    """What a publisher states that export_item takes (license, scaling, provenance, links...)."""
    options: dict[str, Any] = {}
    for key in ("license", "resize_type", "pretrained_source", "artifact_format", "hyperparameters"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    if args.value_scaling is not None:
        options["value_scaling"] = args.value_scaling
    if args.pretrained is not None:
        options["pretrained"] = args.pretrained
    if args.none_applies:
        options["none_applies"] = args.none_applies
    if args.artifact_dir:
        options["artifact_dir"] = args.artifact_dir
    if args.link:
        options["links"] = [{"rel": rel, "href": href} for rel, href in args.link]
    return options


def _extent(args: argparse.Namespace) -> dict[str, Any]:
    extent: dict[str, Any] = {}
    if args.bbox:
        extent["bbox"] = args.bbox
    if args.datetime:
        extent["datetime"] = args.datetime
    if args.start or args.end:
        extent["start_datetime"], extent["end_datetime"] = args.start, args.end
    return extent


def cmd_export(args: argparse.Namespace) -> int:
    """Measure a model file, write its Item, print a summary (or the Item as JSON with ``--json``)."""
    from mlm_export.hashing import start_background

    start_background(args.path)  # before torch/onnx/pystac are imported: the hash runs beside the imports
    from mlm_export.stac.writer import item_to_json_dict, refuse_outside, save_item

    output = Path(args.output)
    if args.href_base is None and args.artifact_format is None and Path(args.path).exists():  # before measuring
        model = item_to_json_dict({"assets": {"model": {"href": os.path.abspath(args.path)}}}, output)
        refuse_outside(model, output, args.allow_outside)
    created = _check_output(output, args.overwrite)
    try:
        item = _export(args)
        path = save_item(item, output, overwrite=args.overwrite, allow_outside=args.allow_outside)
    except BaseException:  # a reported error or Ctrl-C: leave no empty directory this run made
        _remove_empty(created)
        raise
    if args.json:
        print(json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2))  # what was written
        return EXIT_OK
    props = item.properties
    print(f"wrote {path}")
    print(
        f"  {item.id}: {props.get('mlm:architecture')}, {props.get('mlm:framework')} "
        f"{props.get('mlm:framework_version', '')}, {props.get('mlm:total_parameters', '?')} parameters, "
        f"tasks {', '.join(props['mlm:tasks'])}"
    )
    return EXIT_OK


def _export(args: argparse.Namespace) -> Any:
    """``export_item`` with the command's arguments, under the terminal's spinner."""
    from mlm_export.api import export_item
    from mlm_export.cli.provenance import provenance_options

    with status(f"Measuring {args.path}"):
        return export_item(
            args.path,
            **model_options(args),
            **_publisher_options(args),
            **_extent(args),
            **provenance_options(args),
            item_id=args.item_id,
            collection=args.collection,
            description=args.description,
            href_base=args.href_base,
            progress=False if args.no_progress else None,
            schema_dir=args.schema_dir,
            known_answer=args.known_answer,
        )


def add_export_parser(commands: Any) -> None:
    """Register ``export``."""
    export = commands.add_parser(
        "export",
        help="measure a model file and write its STAC Item",
        description="Load the model, dry-run it, hash it, and write a validated MLM STAC Item.",
    )
    add_model_options(export)
    export.add_argument("-o", "--output", required=True, metavar="ITEM_JSON", help="where to write the item")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    export.add_argument("--json", action="store_true", help="print the written Item as JSON")
    export.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="WGS84 extent")
    when = export.add_mutually_exclusive_group()
    when.add_argument("--datetime", help="ISO 8601 date-time of the item")
    when.add_argument("--start", help="start of the temporal extent (with --end)")
    export.add_argument("--end", help="end of the temporal extent (with --start)")
    export.add_argument("--item-id", help="Item id (default: lowercase name + 8 hex digits of the model's sha256)")
    export.add_argument(
        "--collection", metavar="ID",
        help="collection id, linked to ../collection.json when that file exists (or to a --link collection URL)",
    )  # fmt: skip
    export.add_argument("--description", help="item description (the publisher's text)")
    export.add_argument(
        "--known-answer", action="store_true",
        help="also publish asset 'known-answer': a seeded example input and the model's output on it, rerun by check",
    )  # fmt: skip
    export.add_argument("--license", help="SPDX license of the model, e.g. MIT")
    export.add_argument(
        "--value-scaling", type=json_scaling, metavar="JSON|none",
        help="value_scaling as JSON (a list, or an object by input name), or none when no scaling applies",
    )  # fmt: skip
    export.add_argument("--resize-type", metavar="TYPE|none", help="MLM resize_type, or none when none applies")
    export.add_argument(
        "--none-applies", nargs="+", choices=NULLABLE_FIELDS, metavar="FIELD",
        help=f"fields written as null because nothing applies: {', '.join(NULLABLE_FIELDS)}",
    )  # fmt: skip
    pretrained = export.add_mutually_exclusive_group()
    pretrained.add_argument("--pretrained", dest="pretrained", action="store_true", default=None)
    pretrained.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="trained from scratch")
    export.add_argument("--pretrained-source", help="the pre-training dataset or source")
    export.add_argument("--artifact-format", choices=ARTIFACT_FORMATS, help="convert the model to this format")
    export.add_argument("--artifact-dir", help="where a converted artifact is written (default ./artifacts)")
    export.add_argument("--hyperparameters", type=json_object, metavar="JSON", help="mlm:hyperparameters, as JSON")
    export.add_argument(
        "--link", nargs=2, action="append", metavar=("REL", "HREF"), help="extra link, e.g. --link cite-as URL"
    )
    export.add_argument("--href-base", metavar="URL", help="public URL prefix of the artifacts")
    export.add_argument("--schema-dir", help="offline schema directory")
    export.add_argument("--no-progress", action="store_true", help="no progress bars")
    export.add_argument(
        "--allow-outside", action="append", default=[], metavar="DIR",
        help="directory besides the Item's own that its artifacts may lie in (refused otherwise; repeatable)",
    )  # fmt: skip
    from mlm_export.cli.provenance import add_provenance_arguments

    add_provenance_arguments(export)
    export.set_defaults(handler=cmd_export)


# --- inspect -----------------------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    """Measure a model file and print its description."""
    from mlm_export.api import inspect_model

    with status(f"Measuring {args.path}"):
        described = inspect_model(args.path, **model_options(args))
    if args.json:
        print(json.dumps(described.to_dict(), indent=2))
        return EXIT_OK
    print_description(described)
    return EXIT_OK


def add_inspect_parser(commands: Any) -> None:
    """Register ``inspect``."""
    inspect = commands.add_parser(
        "inspect",
        help="print a model's inputs, outputs, parameters and memory without writing anything",
        description="Measure a model file and print its description as a table (or --json).",
    )
    add_model_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print the model description as JSON")
    inspect.set_defaults(handler=cmd_inspect)


def _rows(described: ModelDescription) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for kind, specs in (("input", described.inputs), ("output", described.outputs)):
        for spec in specs:
            dynamic = [name for size, name in zip(spec.shape, spec.dim_order, strict=True) if size == -1]
            shape = "[" + ", ".join(str(s) for s in spec.shape) + "]"
            rows.append((kind, spec.name, shape, ", ".join(spec.dim_order), spec.data_type, ", ".join(dynamic) or "-"))
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


def print_description(described: ModelDescription) -> None:
    """Print a description as a rich table on a terminal, as aligned text otherwise."""
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
            console.print(f"[bold]{key:>12}[/bold]  {value}", highlight=False)
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
    from mlm_export.cli.messages import print_note

    for note in described.notes:
        print_note(note)


# --- check -------------------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Load an Item's model (verified), run it and compare its outputs with the Item."""
    from mlm_export.cli.get import download_options
    from mlm_export.loading import check_item

    with status(f"Loading and running {args.item}"):
        report = check_item(
            args.item,
            asset_key=args.asset,
            model_class=args.model_class,
            model_kwargs=args.model_kwargs,
            trust_pickle=args.trust_pickle,
            trust_code=args.trust_code,
            device=args.device,
            verify=not args.no_verify,
            allow_outside=args.allow_outside,
            **limit_options(args),
            **download_options(args),
        )
    print(report)
    return EXIT_OK if report.ok else EXIT_INVALID


def add_check_parser(commands: Any) -> None:
    """Register ``check``."""
    check = commands.add_parser(
        "check",
        help="load an item's model (checksum verified), run it, compare outputs with the item",
        description="Verify the mlm:model file's size and checksum, load it by mlm:artifact_type, run it on inputs "
        "built from mlm:input and check every mlm:output's shape and dtype. Exit 0 when all match, 1 otherwise.",
    )
    check.add_argument("item", metavar="ITEM_JSON", help="the item to check")
    check.add_argument("--asset", help="asset key to load (default: the first mlm:model asset)")
    check.add_argument("--model-class", metavar="PKG.MOD:CLASS", help="class that rebuilds a model from weights")
    check.add_argument("--model-kwargs", type=json_object, metavar="JSON", help="keyword arguments, as JSON")
    check.add_argument("--trust-pickle", action="store_true", help="allow unpickling code (trusted files only)")
    check.add_argument(
        "--trust-code", action="store_true", help="import the model class the item records (trusted items only)"
    )
    check.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1")
    check.add_argument("--no-verify", action="store_true", help="load a model file the item gives no checksum for")
    add_limit_options(check)
    from mlm_export.cli import add_allow_outside
    from mlm_export.cli.get import add_download_options

    add_download_options(check)
    add_allow_outside(check)
    check.set_defaults(handler=cmd_check)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on a terminal while long work (loading, dry-runs) runs; nothing otherwise."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(message):
            yield
    else:
        yield


def add_parser(commands: Any) -> None:
    """Register ``export``, ``inspect`` and ``check``."""
    add_export_parser(commands)
    add_inspect_parser(commands)
    add_check_parser(commands)
