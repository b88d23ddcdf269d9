"""DATA -> bands on one grid: a coarser band is brought onto the finest grid (nearest), names match by key rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from mlm_export.errors import MissingBandError
from mlm_export.prediction.sources import parse_band_mapping, read_scene


def _write(path: Path, values: np.ndarray, res: float, description: str | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=values.shape[0], width=values.shape[1], count=1,
                       dtype=values.dtype.name, crs="EPSG:32632", transform=from_origin(500_000, 5_100_000, res, res),
                       nodata=0) as dst:  # fmt: skip
        dst.write(values[None])
        if description:
            dst.set_band_description(1, description)
    return path


def test_coarser_band_is_matched_onto_the_finest_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    fine = rng.integers(1, 5000, size=(40, 60), dtype=np.uint16)
    coarse = rng.integers(1, 5000, size=(20, 30), dtype=np.uint16)
    coarse[3, 4] = 0
    files = [_write(tmp_path / "b8a_20m.tif", coarse, 20.0, "B8A"), _write(tmp_path / "B04.tif", fine, 10.0)]
    scene = read_scene(files, ["b4", "B8A"], {})
    assert scene.names == ["b4", "B8A"] and scene.data.shape == (2, 40, 60)
    assert np.array_equal(scene.data[0], fine)
    assert np.array_equal(scene.data[1], np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1))
    assert scene.transform == from_origin(500_000, 5_100_000, 10.0, 10.0)
    assert not scene.valid[6:8, 8:10].any() and scene.valid.sum() == 40 * 60 - 4


def test_common_name_alias_from_the_model_item_and_missing_bands(tmp_path: Path) -> None:
    red = _write(tmp_path / "red.tif", np.ones((8, 8), dtype=np.uint16), 10.0)
    scene = read_scene([red], ["B04"], {"B4": {"B4", "RED"}})
    assert scene.names == ["B04"]
    with pytest.raises(MissingBandError) as caught:
        read_scene([red], ["B04", "B08"], {})
    assert caught.value.missing == ["B04", "B08"] and caught.value.available == ["red"]


def test_band_mapping_syntax() -> None:
    assert parse_band_mapping(["B08=nir.tif:2", "B04=red.tif", "X=c:/data.tif"]) == {
        "B08": ("nir.tif", 2), "B04": ("red.tif", 1), "X": ("c:/data.tif", 1)}  # fmt: skip
