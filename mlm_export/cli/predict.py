"""``mlm-export predict ITEM DATA... -o OUT``: run an Item's model on rasters or a STAC data Item."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from mlm_export.errors import ConfigurationError, MissingDependencyError

#: Seconds ``--scheduler`` waits for the dask scheduler to answer.
SCHEDULER_TIMEOUT_S = 10


def add_parser(commands: Any) -> None:
    """Register the ``predict`` subcommand on the CLI's subparsers."""
    from mlm_export.cli.model import json_object

    predict = commands.add_parser(
        "predict",
        help="run an Item's model on GeoTIFFs or a STAC data Item: a COG (maps) or GeoJSON (per tile) + its Item",
        description="Load the model of ITEM (checksum verified), read the bands it names from DATA onto one grid, "
        "pre-process, tile, run and stitch exactly as the Item declares, and write OUT (a COG for maps, "
        ".geojson/.parquet for one result per window) and the result Item OUT's stem + .json beside it.",
    )
    predict.add_argument("item", metavar="ITEM", help="the model Item: JSON path or URL")
    predict.add_argument("data", nargs="+", metavar="DATA", help="GeoTIFF/COG files, or one STAC Item of the data")
    predict.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (.tif, .geojson, .parquet)")
    predict.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1")
    predict.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    predict.add_argument(
        "--band", action="append", default=[], metavar="NAME=FILE[:INDEX]", help="where a band is (repeatable)"
    )
    predict.add_argument(
        "--input", action="append", default=[], metavar="NAME=PATH", dest="inputs",
        help="file of a model input that names no bands, e.g. a DEM (repeatable)",
    )  # fmt: skip
    predict.add_argument("--resolution", type=float, help="pixel size of the grid (default: the finest band's)")
    predict.add_argument("--crs", help="CRS of the grid, e.g. EPSG:32632 (default: the data's)")
    predict.add_argument(
        "--trust-code", action="store_true", help="import code the Item names (model class, python expressions)"
    )
    predict.add_argument("--scores", action="store_true", help="also write the class scores (OUT-scores.tif)")
    predict.add_argument("--model-class", metavar="PKG.MOD:CLASS", help="class that rebuilds a model from weights")
    predict.add_argument("--model-kwargs", type=json_object, metavar="JSON", help="keyword arguments, as JSON")
    predict.add_argument("--tile-size", type=int, metavar="PX", help="side of dynamic windows (default: memory cap)")
    predict.add_argument(
        "--window-size", type=int, metavar="PX", help="data pixels per model input, resized by the Item's resize_type"
    )
    predict.add_argument("--max-dry-run-memory", metavar="SIZE", help="memory cap sizing tiles and batches, e.g. 2GB")
    predict.add_argument("--chunks", type=int, metavar="PX", help="side of the dask chunks the data is read in")
    predict.add_argument(
        "--scheduler", metavar="ADDRESS", help="run the batches on this dask.distributed scheduler (tcp://host:8786)"
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.add_argument(
        "--verify", action="store_true", help="first rerun the Item's known-answer example; refuse on a mismatch"
    )
    predict.set_defaults(handler=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    with _client(args.scheduler) as client:
        result = _run(args, client)
    skipped = f", {result.skipped} without data skipped" if result.skipped else ""
    print(f"{result.output} ({result.windows} windows{skipped})")
    print(result.item)
    return 0


@contextlib.contextmanager
def _client(address: str | None) -> Iterator[Any]:
    """A dask.distributed Client connected to ``address`` (closed afterwards), or None.

    Raises:
        MissingDependencyError: ``distributed`` is not installed.
        ConfigurationError: no scheduler answers at ``address``.
    """
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise MissingDependencyError(
            f"--scheduler {address} needs dask.distributed: {exc}.", hint="pip install 'mlm-export[predict]'."
        ) from exc
    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(
            f"--scheduler {address}: no dask scheduler answered within {SCHEDULER_TIMEOUT_S} s ({exc}).",
            hint="Start one (dask scheduler) and pass its address, e.g. tcp://127.0.0.1:8786.",
        ) from exc
    with client:
        yield client


def _run(args: argparse.Namespace, client: Any) -> Any:
    from mlm_export.prediction import predict
    from mlm_export.prediction.sources import parse_band_mapping, parse_input_mapping

    return predict(
        args.item,
        args.data,
        args.output,
        device=args.device,
        bands=parse_band_mapping(args.band),
        resolution=args.resolution,
        crs=args.crs,
        overwrite=args.overwrite,
        trust_code=args.trust_code,
        model_class=args.model_class,
        model_kwargs=args.model_kwargs,
        max_dry_run_memory=args.max_dry_run_memory,
        progress=False if args.no_progress else None,
        scores=args.scores,
        tile_size=args.tile_size,
        window_size=args.window_size,
        inputs=parse_input_mapping(args.inputs),
        verify=args.verify,
        chunks=args.chunks,
        client=client,
    )
