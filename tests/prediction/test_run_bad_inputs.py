"""predict() refuses bad inputs with a typed error naming the file/band/argument, and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scenes import (  # noqa: F401 - scene is a fixture
    MEAN,
    STD,
    Seg,
    TileClassifier,
    export_classifier,
    export_seg,
    model_stack,
    scene,
    write_raster,
)

from mlm_export import predict
from mlm_export.errors import (
    DataError,
    MissingBandError,
    OutputExistsError,
    UnsupportedExpressionError,
    UntrustedCodeError,
)
from mlm_export.loading import load_model


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


@pytest.fixture
def seg_item(tmp_path: Path) -> Path:
    return export_seg(tmp_path / "model")


def _edit(item: Path, name: str, change) -> Path:
    """A copy of the Item (beside it, so its hrefs resolve) with ``change(input entry)`` applied."""
    document = json.loads(item.read_text())
    change(document["properties"]["mlm:input"][0])
    path = item.with_name(name)
    path.write_text(json.dumps(document))
    return path


def _nothing_written(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == []


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def test_missing_band_lists_missing_and_available(seg_item: Path, scene: dict, out_dir: Path) -> None:
    files = [f for f in scene["files"] if f.stem != "B04"]
    with pytest.raises(MissingBandError, match="B04") as caught:
        predict(seg_item, files, out_dir / "map.tif", model_class=Seg)
    assert caught.value.missing == ["B04"] and caught.value.available == ["B03", "B08"]
    _nothing_written(out_dir)


def test_data_without_crs_names_the_file(seg_item: Path, scene: dict, out_dir: Path, tmp_path: Path) -> None:
    bare = write_raster(tmp_path / "B04.tif", scene["bands"]["B04"][None], crs=None)
    files = [f for f in scene["files"] if f.stem != "B04"] + [bare]
    with pytest.raises(DataError, match=r"B04\.tif' has no CRS"):
        predict(seg_item, files, out_dir / "map.tif", model_class=Seg)
    _nothing_written(out_dir)


def test_scene_smaller_than_a_fixed_input(scene: dict, out_dir: Path, tmp_path: Path) -> None:
    item = export_classifier(tmp_path / "model")
    small = write_raster(tmp_path / "small.tif", np.stack([scene["bands"][b][:20, :40] for b in ("B08", "B03", "B04")]),
                         ("B08", "B03", "B04"))  # fmt: skip
    with pytest.raises(DataError, match=r"20 x 40 pixels, smaller than the model's fixed input of 32 x 32"):
        predict(item, [small], out_dir / "tiles.geojson", model_class=TileClassifier)
    _nothing_written(out_dir)


def test_all_nodata(seg_item: Path, out_dir: Path, tmp_path: Path) -> None:
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 40, 40), dtype=np.uint16), ("B04", "B03", "B08"))
    with pytest.raises(DataError, match=r"empty\.tif\) is nodata"):
        predict(seg_item, [empty], out_dir / "map.tif", model_class=Seg)
    _nothing_written(out_dir)


def test_values_outside_the_input_type(seg_item: Path, scene: dict, out_dir: Path) -> None:
    def to_uint8(entry: dict) -> None:
        entry["input"]["data_type"] = "uint8"
        entry.pop("value_scaling")

    item = _edit(seg_item, "uint8.json", to_uint8)
    with pytest.raises(DataError, match=r"Input 'input'.*outside uint8's range \[0, 255\]"):
        predict(item, scene["files"], out_dir / "map.tif", model_class=Seg, tile_size=64)
    _nothing_written(out_dir)


def test_output_exists_is_left_untouched(seg_item: Path, scene: dict, out_dir: Path) -> None:
    (out_dir / "map.tif").write_bytes(b"earlier")
    with pytest.raises(OutputExistsError, match="map.tif"):
        predict(seg_item, scene["files"], out_dir / "map.tif", model_class=Seg)
    assert (out_dir / "map.tif").read_bytes() == b"earlier"
    assert sorted(p.name for p in out_dir.iterdir()) == ["map.tif"]


def test_expression_format_that_cannot_run(seg_item: Path, scene: dict, out_dir: Path) -> None:
    def openeo(entry: dict) -> None:
        entry["bands"][2] = {"name": "B08", "format": "openeo", "expression": {"process_graph": {}}}

    item = _edit(seg_item, "openeo.json", openeo)
    with pytest.raises(UnsupportedExpressionError, match="Band 'B08' has an expression of format 'openeo'"):
        predict(item, scene["files"], out_dir / "map.tif", model_class=Seg)
    _nothing_written(out_dir)


def test_python_expression_needs_trust_code(seg_item: Path, scene: dict, out_dir: Path) -> None:
    def negate(entry: dict) -> None:
        entry["pre_processing_function"] = {"format": "python", "expression": "numpy:negative"}

    item = _edit(seg_item, "python.json", negate)
    with pytest.raises(UntrustedCodeError, match="numpy:negative"):
        predict(item, scene["files"], out_dir / "map.tif", model_class=Seg)
    _nothing_written(out_dir)
    predict(item, scene["files"], out_dir / "map.tif", model_class=Seg, trust_code=True, tile_size=64)
    import rasterio

    model = load_model(seg_item, model_class=Seg)
    x = -(model_stack(scene) - MEAN) / STD
    x[:, ~scene["valid"]] = 0.0
    with torch.no_grad():
        scores = model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    expected = np.where(scene["valid"], scores.argmax(0), 255)
    with rasterio.open(out_dir / "map.tif") as src:
        assert np.array_equal(src.read(1), expected)


def test_gdal_calc_band_expression_runs_through_numexpr(seg_item: Path, scene: dict, out_dir: Path) -> None:
    def ndvi(entry: dict) -> None:
        entry["bands"][2] = {"name": "NDVI", "format": "gdal-calc", "expression": "(B08 - B04) / (B08 + B04)"}
        entry["value_scaling"] = [{"type": "z-score", "mean": MEAN, "stddev": STD}] * 2 + [{"type": "scale",
                                                                                            "value": 0.5}]  # fmt: skip

    item = _edit(seg_item, "ndvi.json", ndvi)
    predict(item, scene["files"], out_dir / "map.tif", model_class=Seg, tile_size=64)
    import rasterio

    bands = {b: scene["bands"][b].astype(np.float64) for b in ("B04", "B03", "B08")}
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.stack([(bands["B04"] - MEAN) / STD, (bands["B03"] - MEAN) / STD,
                      (bands["B08"] - bands["B04"]) / (bands["B08"] + bands["B04"]) / 0.5])  # fmt: skip
    x[:, ~scene["valid"]] = 0.0
    model = load_model(seg_item, model_class=Seg)
    with torch.no_grad():
        scores = model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    with rasterio.open(out_dir / "map.tif") as src:
        assert np.array_equal(src.read(1), np.where(scene["valid"], scores.argmax(0), 255))
