"""``mlm-export predict ITEM DATA... -o OUT``: run an Item's model on rasters or a STAC data Item."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    """Register the ``predict`` subcommand on the CLI's subparsers."""
    from mlm_export.cli_model import json_object

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
    predict.add_argument("--max-dry-run-memory", metavar="SIZE", help="memory cap sizing tiles and batches, e.g. 2GB")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.add_argument(
        "--verify", action="store_true", help="first rerun the Item's known-answer example; refuse on a mismatch"
    )
    predict.set_defaults(handler=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from mlm_export.prediction import predict
    from mlm_export.prediction.sources import parse_band_mapping, parse_input_mapping

    result = predict(
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
        inputs=parse_input_mapping(args.inputs),
        verify=args.verify,
    )
    skipped = f", {result.skipped} without data skipped" if result.skipped else ""
    print(f"{result.output} ({result.windows} windows{skipped})")
    print(result.item)
    return 0
