"""STAC data Items whose assets hold several bands: each band is read from its index of its asset (odc-stac)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scenes import MEAN, MODEL_BANDS, STD, Seg, export_seg, reflectance, write_raster

from mlm_export import predict, validate_item
from mlm_export.loading import load_model
from mlm_export.prediction.sources import read_scene

#: The 4-band asset's order: an extra band first, then the model's bands in another order than the model's.
ASSET_ORDER = ("B02", "B08", "B03", "B04")
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _scene(directory: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``directory/multi.tif``: 4 uint16 bands in :data:`ASSET_ORDER`, no band descriptions (the Item names them)."""
    bands, valid = reflectance()
    bands["B02"] = np.where(valid, 3999, 0).astype(np.uint16)
    directory.mkdir(parents=True, exist_ok=True)
    write_raster(directory / "multi.tif", np.stack([bands[b] for b in ASSET_ORDER]))
    return bands, valid


def _item(path: Path, field: str, assets: dict | None = None) -> Path:
    """A data Item with one asset ``image`` (``./multi.tif``) listing its 4 bands under ``field``."""
    listed = [{"name": b, ("common_name" if field == "bands" else "eo:common_name"): COMMON[b]} for b in ASSET_ORDER]
    image = {"href": "./multi.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
             "roles": ["data"], field: listed}  # fmt: skip
    document = {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": "multi",
                "geometry": {"type": "Point", "coordinates": [9.0, 46.0]}, "bbox": [9.0, 46.0, 9.0, 46.0],
                "properties": {"datetime": "2023-06-01T10:00:00Z"}, "links": [],
                "assets": {"image": image, **(assets or {})}}  # fmt: skip
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _reference(item: Path, bands: dict[str, np.ndarray], valid: np.ndarray) -> np.ndarray:
    """The class map of a whole-scene forward on the model's bands (the 3x3 conv needs no tiling)."""
    model = load_model(item, model_class=Seg)
    x = (np.stack([bands[b] for b in MODEL_BANDS]).astype(np.float64) - MEAN) / STD
    x[:, ~valid] = 0.0
    with torch.no_grad():
        scores = model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    return np.where(valid, scores.argmax(0), 255).astype(np.uint8)


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


@pytest.mark.parametrize("field", ["bands", "eo:bands"])
def test_bands_are_read_from_their_index_of_a_multiband_asset(tmp_path: Path, field: str) -> None:
    bands, valid = _scene(tmp_path / "data")
    data = _item(tmp_path / "data" / "item.json", field)
    scene = read_scene([data], ["B08", "red", "b3"], {})
    for plane, name in zip(scene.data, ["B08", "B04", "B03"], strict=True):
        assert np.array_equal(np.nan_to_num(plane), bands[name])  # odc-stac reads nodata (0) as NaN
    item = export_seg(tmp_path / "model")
    result = predict(item, data, tmp_path / "map.tif", model_class=Seg, tile_size=64, overlap=4)
    assert np.array_equal(_read(tmp_path / "map.tif"), _reference(item, bands, valid))
    assert validate_item(result.item).valid


def test_a_one_band_asset_is_preferred_to_the_same_band_of_a_multiband_asset(tmp_path: Path) -> None:
    bands, _ = _scene(tmp_path / "data")
    red = bands["B04"] // 2 + 1
    write_raster(tmp_path / "data" / "red.tif", red[None])
    single = {"red": {"href": "./red.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                      "bands": [{"name": "B04", "common_name": "red"}]}}  # fmt: skip
    data = _item(tmp_path / "data" / "item.json", "bands", single)
    scene = read_scene([data], ["B04", "image.2"], {})
    assert np.array_equal(np.nan_to_num(scene.data[0]), red)
    assert np.array_equal(np.nan_to_num(scene.data[1]), bands["B08"])


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_multiband_asset_of_an_item_served_over_loopback_http(tmp_path: Path) -> None:
    from loopback import served_in_child

    bands, valid = _scene(tmp_path / "site")
    _item(tmp_path / "site" / "item.json", "eo:bands")
    item = export_seg(tmp_path / "model")
    with served_in_child(tmp_path / "site") as url:
        result = predict(item, f"{url}/item.json", tmp_path / "map.tif", model_class=Seg, tile_size=64)
    assert np.array_equal(_read(tmp_path / "map.tif"), _reference(item, bands, valid))
    links = json.loads(result.item.read_text())["links"]
    assert f"{url}/item.json" in [link["href"] for link in links]
