"""resize_type: windows of window_size resized to the model's input (torch interpolate), results resized back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from scenes import HEIGHT, MEAN, STD, WIDTH, Seg, export_seg, model_stack, scene  # noqa: F401 - scene is a fixture

from mlm_export import predict
from mlm_export.errors import ConfigurationError
from mlm_export.loading import load_model

MODES = {"interpolation-nearest": "nearest", "interpolation-linear": "bilinear", "interpolation-cubic": "bicubic",
         "interpolation-area": "area"}  # fmt: skip
WINDOW, TILE = 48, 32


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _resize(values: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    options = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(values, size=(size, size), mode=mode, **options)


def _reference(item: Path, scene: dict, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Windows of 48 px side by side (overlap 0): raw bands padded, resized to 32, z-score, nodata 0, forward,
    scores resized back to 48 and cut to the scene; class values where the data is valid."""
    model = load_model(item, model_class=Seg)
    raw, valid = model_stack(scene), scene["valid"]
    scores = np.full((3, HEIGHT, WIDTH), np.nan, dtype=np.float32)
    for row in range(0, HEIGHT, WINDOW):
        for col in range(0, WIDTH, WINDOW):
            part = np.zeros((1, 3, WINDOW, WINDOW))
            mask = np.zeros((1, 1, WINDOW, WINDOW))
            cut = raw[:, row : row + WINDOW, col : col + WINDOW]
            part[0, :, : cut.shape[1], : cut.shape[2]] = cut
            mask[0, 0, : cut.shape[1], : cut.shape[2]] = valid[row : row + WINDOW, col : col + WINDOW]
            x = (_resize(torch.from_numpy(part), TILE, mode) - MEAN) / STD
            x = torch.where(_resize(torch.from_numpy(mask), TILE, "nearest") > 0.5, x, 0.0)
            with torch.no_grad():
                y = _resize(model(x.float()), WINDOW, mode)[0].numpy()
            scores[:, row : row + WINDOW, col : col + WINDOW] = y[:, : cut.shape[1], : cut.shape[2]]
    scores = np.where(valid[None], scores, np.nan)
    return np.where(valid, np.nan_to_num(scores, nan=-np.inf).argmax(0), 255).astype(np.uint8), scores


@pytest.mark.parametrize("resize_type", list(MODES))
def test_windows_are_interpolated_to_the_input_and_back(tmp_path: Path, scene: dict, resize_type: str) -> None:
    item = export_seg(tmp_path / "model", resize_type=resize_type)
    out = tmp_path / "map.tif"
    result = predict(item, scene["files"], out, model_class=Seg, tile_size=TILE, window_size=WINDOW, overlap=0,
                     scores=True)  # fmt: skip
    classes, scores = _reference(item, scene, MODES[resize_type])
    with rasterio.open(out) as src:
        written = src.read(1)
    with rasterio.open(tmp_path / "map-scores.tif") as src:
        written_scores = src.read()
    np.testing.assert_allclose(written_scores, scores, atol=1e-5, equal_nan=True)
    assert np.array_equal(written, classes)
    assert result.windows == 6


@pytest.mark.parametrize("resize_type", [None, "crop", "interpolation-lanczos4", "wrap-inverse-map"])
def test_a_window_size_the_resize_type_cannot_reach_is_refused(tmp_path: Path, scene: dict, resize_type) -> None:
    item = export_seg(tmp_path / "model", resize_type=resize_type)
    out = tmp_path / "map.tif"
    with pytest.raises(ConfigurationError, match="window_size 48 x 48 differs") as caught:
        predict(item, scene["files"], out, model_class=Seg, tile_size=TILE, window_size=WINDOW)
    assert "--window-size" in caught.value.hint
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_per_tile_outputs_take_resized_windows(tmp_path: Path, scene: dict) -> None:
    import json

    from scenes import CLASSES, MODEL_BANDS, TileClassifier

    from mlm_export import export_item, save_item

    torch.manual_seed(1)
    (tmp_path / "model").mkdir()
    exported = export_item(TileClassifier(), input_shape=[-1, 3, 32, 32], bands=list(MODEL_BANDS), classes=CLASSES,
                           tasks=["classification"], resize_type="interpolation-area",
                           value_scaling=[{"type": "min-max", "minimum": 0, "maximum": 4000}],
                           bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z",
                           artifact_dir=tmp_path / "model", item_id="tiles")  # fmt: skip
    item = save_item(exported, tmp_path / "model" / "item.json")
    out = tmp_path / "tiles.geojson"
    predict(item, scene["files"], out, model_class=TileClassifier, window_size=64)
    model = load_model(item, model_class=TileClassifier)
    raw, valid, expected = model_stack(scene), scene["valid"], []
    for row in range(0, HEIGHT, 64):
        for col in range(0, WIDTH, 64):
            part, mask = np.zeros((1, 3, 64, 64)), np.zeros((1, 1, 64, 64))
            cut = raw[:, row : row + 64, col : col + 64]
            part[0, :, : cut.shape[1], : cut.shape[2]] = cut
            mask[0, 0, : cut.shape[1], : cut.shape[2]] = valid[row : row + 64, col : col + 64]
            x = _resize(torch.from_numpy(part), 32, "area") / 4000.0
            x = torch.where(_resize(torch.from_numpy(mask), 32, "nearest") > 0.5, x, 0.0)
            with torch.no_grad():
                logits = model(x.float())[0].numpy()
            expected.append((row, col, int(logits.argmax()), float(logits.max())))
    features = json.loads(out.read_text())["features"]
    got = [(f["properties"]["row"], f["properties"]["col"], f["properties"]["class_value"],
            f["properties"]["score"]) for f in features]  # fmt: skip
    assert [g[:3] for g in got] == [e[:3] for e in expected] and len(got) == 4
    np.testing.assert_allclose([g[3] for g in got], [e[3] for e in expected], atol=1e-5)
