"""Multi-input Items: inputs without bands (a DEM) given as ``inputs={name: path}`` / ``--input NAME=PATH``, read onto
the grid of DATA and pre-processed by their own entry; unreachable data URLs are typed errors."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scenes import (  # noqa: F401 - scene is a fixture
    CLASSES,
    CRS,
    HEIGHT,
    MEAN,
    MODEL_BANDS,
    NORTH,
    STD,
    WEST,
    WIDTH,
    model_stack,
    scene,
)
from torch import nn

from mlm_export import export_item, predict, save_item, validate_item
from mlm_export.cli import main
from mlm_export.errors import ConfigurationError, DataError

DEM_MEAN, DEM_STD, DEM_NODATA = 800.0, 150.0, -9999.0


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


class TwoSeg(nn.Module):
    """Image [B, 3, H, W] (3x3 conv) + DEM [B, 1, H, W] (1x1 conv) -> 3 class scores."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, 3, 3, padding=1)
        self.height = nn.Conv2d(1, 3, 1)

    def forward(self, image: torch.Tensor, dem: torch.Tensor) -> torch.Tensor:
        return self.image(image) + self.height(dem)


def _export_two(directory: Path, fmt: str | None = None) -> Path:
    torch.manual_seed(5)
    item = export_item(
        TwoSeg(), input_shape=[[-1, 3, -1, -1], [-1, 1, -1, -1]], bands={"image": list(MODEL_BANDS)},
        value_scaling={"image": [{"type": "z-score", "mean": MEAN, "stddev": STD}],
                       "dem": [{"type": "z-score", "mean": DEM_MEAN, "stddev": DEM_STD}]},
        tasks=["semantic-segmentation"], classes=CLASSES, artifact_dir=directory, item_id="two-inputs",
        bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z", artifact_format=fmt,
    )  # fmt: skip
    return save_item(item, directory / "item.json")


@pytest.fixture
def two_input_item(tmp_path: Path) -> Path:
    return _export_two(tmp_path / "model")


@pytest.fixture
def dem(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 20 m float32 DEM over the scene (half its rows and columns) with a nodata block; returns it and its values."""
    rng = np.random.default_rng(3)
    values = rng.uniform(300, 1500, size=(HEIGHT // 2, WIDTH // 2)).astype(np.float32)
    values[0:5, 30:40] = DEM_NODATA
    path = tmp_path / "dem.tif"
    profile = {"driver": "GTiff", "height": values.shape[0], "width": values.shape[1], "count": 1, "dtype": "float32",
               "crs": CRS, "transform": from_origin(WEST, NORTH, 20.0, 20.0), "nodata": DEM_NODATA}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values[None])
    return path, values


def _reference(item: Path, scene: dict, dem_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole-scene forward: the DEM repeated 2 x 2 onto the 10 m grid, each input z-scored by its own entry."""
    from mlm_export.loading import load_model

    model = load_model(item, model_class=TwoSeg)
    height = np.repeat(np.repeat(dem_values, 2, axis=0), 2, axis=1).astype(np.float64)
    valid = scene["valid"] & (height != DEM_NODATA)
    image = (model_stack(scene) - MEAN) / STD
    elevation = ((height - DEM_MEAN) / DEM_STD)[None]
    image[:, ~valid], elevation[:, ~valid] = 0.0, 0.0
    with torch.no_grad():
        scores = model(torch.from_numpy(image[None].astype(np.float32)),
                       torch.from_numpy(elevation[None].astype(np.float32)))[0].numpy()  # fmt: skip
    return np.where(valid, scores.argmax(0), 255), valid


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_two_input_model_reads_the_dem_onto_the_grid(fmt: str, tmp_path: Path, scene: dict, two_input_item: Path,
                                                     dem) -> None:  # fmt: skip
    item = two_input_item if fmt == "safetensors" else _export_two(tmp_path / "onnx", "onnx")
    out = tmp_path / "map.tif"
    kwargs = {"model_class": TwoSeg} if fmt == "safetensors" else {}
    result = predict(item, scene["files"], out, inputs={"dem": dem[0]}, tile_size=64, overlap=4, **kwargs)
    expected, valid = _reference(two_input_item, scene, dem[1])
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(1), expected)
    assert not valid[0:10, 60:80].any()  # the DEM's nodata block is nodata in the map
    assert validate_item(result.item).valid


def test_cli_input_name_equals_path(tmp_path: Path, scene: dict, two_input_item: Path, dem) -> None:
    out = tmp_path / "cli.tif"
    argv = ["predict", str(two_input_item), *map(str, scene["files"]), "-o", str(out), "--input", f"dem={dem[0]}",
            "--model-class", f"{__name__}:TwoSeg", "--trust-code", "--tile-size", "64", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(1), _reference(two_input_item, scene, dem[1])[0])


def _empty(directory: Path) -> None:
    assert [p.name for p in directory.iterdir()] == []


def test_missing_unknown_and_misshapen_inputs(tmp_path: Path, scene: dict, two_input_item: Path, dem) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ConfigurationError, match=r"'dem'.*--input dem=PATH") as caught:
        predict(two_input_item, scene["files"], out_dir / "map.tif", model_class=TwoSeg)
    assert "--input dem=PATH" in caught.value.hint
    with pytest.raises(
        ConfigurationError, match="'slope' is not an input of the model Item; inputs without bands: dem"
    ):
        predict(two_input_item, scene["files"], out_dir / "map.tif", inputs={"dem": dem[0], "slope": dem[0]},
                model_class=TwoSeg)  # fmt: skip
    with pytest.raises(DataError, match=r"'dem' \('.*B04\.tif'\) has 1 band|'dem' \('.*stack\.tif'\) has 3 band"):
        predict(two_input_item, scene["files"], out_dir / "map.tif", inputs={"dem": scene["stack"]},
                model_class=TwoSeg)  # fmt: skip
    _empty(out_dir)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("name", ["B04.tif", "scene.json"])
def test_unreachable_data_url_is_a_data_error_naming_it(name: str, tmp_path: Path) -> None:
    from scenes import Seg, export_seg

    item = export_seg(tmp_path / "seg")
    url = f"http://127.0.0.1:{_closed_port()}/data/{name}"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DataError, match=f"'{url}'") as caught:
        predict(item, [url], out_dir / "map.tif", model_class=Seg)
    assert caught.value.hint
    _empty(out_dir)
