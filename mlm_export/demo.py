"""The README's main job: export a demo model, catalog it and search it (``python -m mlm_export.demo``).

A torchgeo ResNet-18 over the 13 Sentinel-2 L1C bands (randomly initialised, nothing downloaded) is measured,
written as safetensors, described as an MLM Item, validated offline, loaded back from the Item and checked; then
the Item goes into a local catalog (``<output>/catalog``, self-contained, every Item valid) with a model card per
Item, and the catalog is searched the way a user with a Sentinel-2 tile over Switzerland would. Last, the model is
*used*: a small torchgeo FCN land-cover segmenter over the same 13 bands (random weights, TorchScript, so running it
imports no code) is exported, a Sentinel-2-like scene is written (``<output>/scene/sentinel2.tif``: 13 bands,
random uint16 reflectance, UTM 32N, 10 m) and ``predict`` runs the segmenter on it from its Item alone, writing a
COG and its result Item (``<output>/prediction/landcover.tif`` and ``.json``). No server, no download.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlm_export.errors import MLMExportError

SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")  # fmt: skip


def build_demo_model() -> Any:
    """Return torchgeo's ResNet-18 with 13 input channels and 10 classes, randomly initialised."""
    from torchgeo.models import resnet18

    return resnet18(weights=None, in_chans=len(SENTINEL2_BANDS), num_classes=len(EUROSAT_CLASSES))


def run(output: Path, *, overwrite: bool = True) -> Path:
    """Export, save, validate and check the demo model; returns the item path."""
    import torch

    from mlm_export import check_item, export_item, save_item, validate_item

    if output.exists() and overwrite:
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    item = export_item(
        build_demo_model(),
        tasks=["classification"],
        bands=SENTINEL2_BANDS,
        classes=EUROSAT_CLASSES,
        name="resnet18-sentinel2-demo",
        item_id="resnet18-sentinel2-demo",  # a fixed id: the demo is re-run and published under this name
        description="Demo: torchgeo ResNet-18 over the 13 Sentinel-2 L1C bands (random weights).",
        bbox=[-31.3, 34.5, 44.8, 71.2],
        start_datetime="2017-01-01T00:00:00Z",
        end_datetime="2018-12-31T23:59:59Z",
        artifact_dir=output,
    )
    path = save_item(item, output / "item.json", overwrite=True)
    report = validate_item(path)
    report.raise_for_problems()
    checked = check_item(path, model_class=build_demo_model)
    props = item.properties
    print(f"item:        {path.resolve()}")
    print(f"model:       {props['mlm:name']} ({props['mlm:architecture']})")
    print(f"framework:   {props['mlm:framework']} {props['mlm:framework_version']}")
    print(f"parameters:  {props['mlm:total_parameters']:,}   memory: {props['mlm:memory_size']:,} bytes")
    for spec in props["mlm:input"]:
        print(f"input:       {spec['name']} {spec['input']['shape']} {spec['input']['dim_order']}")
    for spec in props["mlm:output"]:
        print(f"output:      {spec['name']} {spec['result']['shape']} {spec['result']['dim_order']}")
    print(f"validation:  {'valid' if report.valid else 'INVALID'} ({len(report.schemas)} schemas)")
    print(f"check_item:  {'outputs match' if checked.ok else 'MISMATCH'}")
    if not checked.ok:
        print(checked)
        raise SystemExit(1)
    catalog_and_search(path, output / "catalog")
    predict_on_scene(output)
    return path


SCENE_SIZE = 256
SCENE_CRS = "EPSG:32632"


def write_scene(path: Path, *, size: int = SCENE_SIZE, seed: int = 0) -> Path:
    """A Sentinel-2-like GeoTIFF: 13 bands (described B01..B12), random uint16 reflectance, UTM 32N at 10 m."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    data = np.random.default_rng(seed).integers(1, 10_000, size=(len(SENTINEL2_BANDS), size, size), dtype=np.uint16)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": len(SENTINEL2_BANDS), "dtype": "uint16",
               "crs": SCENE_CRS, "transform": from_origin(320_000.0, 5_180_000.0, 10.0, 10.0), "nodata": 0,
               "tiled": True, "blockxsize": 128, "blockysize": 128}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(SENTINEL2_BANDS, start=1):
            dst.set_band_description(index, name)
    return path


def export_segmenter(directory: Path) -> Path:
    """Torchgeo's FCN (13 bands -> 10 land-cover classes, random weights) as TorchScript + its Item."""
    import torch
    from torchgeo.models import FCN

    from mlm_export import export_item, save_item

    torch.manual_seed(0)
    model = torch.jit.script(FCN(in_channels=len(SENTINEL2_BANDS), classes=len(EUROSAT_CLASSES), num_filters=16))
    item = export_item(
        model, input_shape=[-1, len(SENTINEL2_BANDS), -1, -1], tasks=["semantic-segmentation"],
        bands=SENTINEL2_BANDS, classes=EUROSAT_CLASSES, name="fcn-sentinel2-landcover-demo",
        item_id="fcn-sentinel2-landcover-demo", value_scaling=[{"type": "scale", "value": 10_000}],
        resize_type="none", none_applies=["pre_processing_function", "post_processing_function"],
        description="Demo: torchgeo FCN land-cover segmenter over the 13 Sentinel-2 L1C bands (random weights).",
        bbox=[5.9, 45.8, 10.5, 47.8], datetime="2024-01-01T00:00:00Z", artifact_dir=directory,
    )  # fmt: skip
    return save_item(item, directory / "item.json", overwrite=True)


def predict_on_scene(output: Path) -> Any:
    """Write the demo scene, export the segmenter and run ``predict`` on the scene; returns the PredictionResult."""
    from mlm_export import predict, validate_item

    scene = write_scene(output / "scene" / "sentinel2.tif")
    item = export_segmenter(output / "segmentation")
    (output / "prediction").mkdir(exist_ok=True)
    result = predict(item, [scene], output / "prediction" / "landcover.tif", overwrite=True, progress=False)
    validate_item(result.item).raise_for_problems()
    print(f"scene:       {scene.resolve()} (13 Sentinel-2 bands, {SCENE_SIZE} x {SCENE_SIZE} uint16, {SCENE_CRS})")
    print(f"segmenter:   {item.resolve()}")
    print(f"prediction:  {result.output.resolve()} (COG, {result.windows} window(s))")
    print(f"result item: {result.item.resolve()} (valid)")
    return result


#: What the demo's search asks for: a classifier that reads only the bands of a Sentinel-2 L1C tile over western
#: Switzerland (``bands`` are the bands the user has: a hit reads nothing else).
DEMO_QUERY: dict[str, Any] = {"bbox": [6.0, 46.0, 7.0, 47.0], "tasks": ["classification"], "bands": SENTINEL2_BANDS}


def catalog_and_search(item_path: Path, catalog_dir: Path) -> list[Any]:
    """Catalog the exported Item (with model cards), validate every catalog Item, search the catalog; returns hits."""
    from mlm_export import build_catalog, search, validate_item
    from mlm_export.card.catalog import write_catalog_cards

    collection = build_catalog([item_path], catalog_dir, collection_id="demo-models", overwrite=True)
    catalog_items = sorted(catalog_dir.glob("*/*.json"))
    for catalog_item in catalog_items:
        validate_item(catalog_item).raise_for_problems()
    write_catalog_cards(catalog_dir / "collection.json", overwrite=True)
    hits = search(catalog_dir, **DEMO_QUERY)
    print(f"catalog:     {(catalog_dir / 'collection.json').resolve()} ({len(catalog_items)} item, all valid)")
    print(f"cards:       {(catalog_dir / 'index.html').resolve()}")
    print(f"search:      {len(hits)} hit(s) for a classifier of Sentinel-2 L1C bands over 6-7E 46-47N: "
          f"{[h.id for h in hits]}")  # fmt: skip
    if not hits or collection.id != "demo-models":
        raise SystemExit(1)
    return hits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mlm_export.demo", description=__doc__)
    parser.add_argument("--output", default="demo-output", help="directory for the item and its artifacts")
    args = parser.parse_args(argv)
    try:
        run(Path(args.output))
    except MLMExportError as exc:
        return report(exc)
    return 0


def report(exc: MLMExportError) -> int:
    """Print a reported error as ``error:`` and ``hint:`` lines on stderr; returns exit code 1."""
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
