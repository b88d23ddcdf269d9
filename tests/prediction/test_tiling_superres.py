"""Outputs finer than the input (super-resolution): a PixelShuffle model's map on the grid refined k times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scenes import MEAN, MODEL_BANDS, NORTH, RES, STD, WEST, model_stack, scene  # noqa: F401 - scene is a fixture
from torch import nn

from mlm_export import export_item, predict, save_item, validate_item
from mlm_export.errors import DataError
from mlm_export.loading import load_model
from mlm_export.prediction.tiling import Window, fine_core, output_factor


class SuperRes(nn.Module):
    """A 3x3 convolution then PixelShuffle(k): [B, 3, H, W] -> [B, 3, kH, kW] (receptive field 1 px each side)."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * factor * factor, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _export(directory: Path, factor: int) -> Path:
    torch.manual_seed(2)
    directory.mkdir(parents=True, exist_ok=True)
    item = export_item(SuperRes(factor), input_shape=[-1, 3, -1, -1], bands=list(MODEL_BANDS),
                       tasks=["super-resolution"], value_scaling=[{"type": "z-score", "mean": MEAN, "stddev": STD}],
                       bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z", artifact_dir=directory,
                       item_id=f"sr{factor}")  # fmt: skip
    return save_item(item, directory / "item.json")


@pytest.mark.parametrize("factor", [2, 3])
def test_super_resolution_map_on_the_refined_grid(tmp_path: Path, scene: dict, factor: int) -> None:
    item = _export(tmp_path / "model", factor)
    out = tmp_path / "sr.tif"
    result = predict(item, scene["files"], out, model_class=SuperRes, model_kwargs={"factor": factor}, tile_size=64,
                     overlap=4)  # fmt: skip
    model = load_model(item, model_class=SuperRes, model_kwargs={"factor": factor})
    x = (model_stack(scene) - MEAN) / STD
    x[:, ~scene["valid"]] = 0.0
    with torch.no_grad():
        expected = model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    fine_valid = np.kron(scene["valid"], np.ones((factor, factor), dtype=bool))
    expected = np.where(fine_valid[None], expected, np.nan)
    with rasterio.open(out) as src:
        written, transform, shape = src.read(), src.transform, (src.height, src.width)
    assert shape == (120 * factor, 90 * factor)
    assert transform.almost_equals(from_origin(WEST, NORTH, RES / factor, RES / factor), precision=1e-9)
    np.testing.assert_allclose(written, expected, atol=1e-5, equal_nan=True)
    assert result.windows > 1
    assert validate_item(result.item).valid
    raster_band = json.loads(result.item.read_text())["assets"]["data"]["raster:bands"][0]
    assert raster_band["data_type"] == "float32"
    assert raster_band["spatial_resolution"] == pytest.approx(RES / factor)  # the finer grid's, in metres (UTM)


def test_output_factor_and_fine_core() -> None:
    assert output_factor((64, 64), (64, 64), "y") == 1 and output_factor((128, 96), (64, 48), "y") == 2
    for shape in [(32, 32), (96, 64), (128, 192)]:
        with pytest.raises(DataError, match="whole multiple"):
            output_factor(shape, (64, 64), "y")
    window = Window(10, 20, 4, 4, (11, 13, 21, 24))
    result = np.arange(2 * 8 * 8).reshape(2, 8, 8)
    valid = np.arange(16).reshape(4, 4) % 3 > 0
    values, mask = fine_core(result, valid, window, 2)
    assert np.array_equal(values, result[:, 2:6, 2:8])
    assert np.array_equal(mask, np.kron(valid[1:3, 1:4], np.ones((2, 2), dtype=bool)))


class Coarser(nn.Module):
    """A stride-2 convolution: an output half the input's size, which predict cannot place."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_a_coarser_output_is_refused_and_nothing_is_left(tmp_path: Path, scene: dict) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    item = save_item(export_item(Coarser(), input_shape=[-1, 3, -1, -1], bands=list(MODEL_BANDS),
                                 tasks=["regression"], bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z",
                                 artifact_dir=directory, item_id="coarse"), directory / "item.json")  # fmt: skip
    out = tmp_path / "out" / "coarse.tif"
    out.parent.mkdir()
    with pytest.raises(DataError, match="whole multiple") as caught:
        predict(item, scene["files"], out, model_class=Coarser, tile_size=64)
    assert "load_model" in caught.value.hint
    assert list(out.parent.iterdir()) == []
