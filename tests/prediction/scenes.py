"""Scenes written with rasterio (UTM 32N, uint16 reflectance, nodata holes) and small models exported as Items."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from mlm_export import export_item, save_item

CRS = "EPSG:32632"
WEST, NORTH, RES = 500_000.0, 5_100_000.0, 10.0
HEIGHT, WIDTH = 120, 90
#: The files' band order differs from the model's (B04, B03, B08).
FILE_ORDER = ("B08", "B03", "B04")
MODEL_BANDS = ("B04", "B03", "B08")
MEAN, STD = 1000.0, 400.0
CLASSES = [
    {"name": "water", "value": 0, "color_hint": "0000FF"},
    {"name": "forest", "value": 1, "color_hint": "00FF00"},
    {"name": "urban", "value": 2, "color_hint": "FF0000"},
]


class Seg(nn.Module):
    """One 3x3 convolution: a dense net of dynamic height/width whose receptive field is 1 pixel each side."""

    def __init__(self, in_channels: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TileClassifier(nn.Module):
    """A fixed 32x32 classifier: [B, 3, 32, 32] -> [B, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 32 * 32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def reflectance() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per band uint16 values (0 = nodata) and the valid mask: a hole, scattered pixels, one empty corner block."""
    rng = np.random.default_rng(7)
    bands = {b: rng.integers(1, 4000, size=(HEIGHT, WIDTH), dtype=np.uint16) for b in FILE_ORDER}
    valid = np.ones((HEIGHT, WIDTH), dtype=bool)
    valid[40:55, 20:35] = False  # a hole
    valid[rng.random((HEIGHT, WIDTH)) < 0.01] = False
    valid[96:, 64:] = False  # the last corner window of a 32 px grid has no data
    for name, values in bands.items():
        values[~valid] = 0
        if name == "B03":
            values[5, 5] = 0  # one band alone without data: the pixel is nodata
    valid[5, 5] = False
    return bands, valid


def write_raster(path: Path, planes: np.ndarray, names: tuple[str, ...] = (), *, crs: str | None = CRS) -> Path:
    profile = {"driver": "GTiff", "height": planes.shape[1], "width": planes.shape[2], "count": planes.shape[0],
               "dtype": planes.dtype.name, "transform": from_origin(WEST, NORTH, RES, RES), "nodata": 0}  # fmt: skip
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(planes)
        for index, name in enumerate(names, start=1):
            dst.set_band_description(index, name)
    return path


@pytest.fixture
def scene(tmp_path: Path) -> dict:
    """Single-band files B08.tif, B03.tif, B04.tif and a multi-band stack.tif (file order B08 B03 B04)."""
    bands, valid = reflectance()
    directory = tmp_path / "scene"
    directory.mkdir()
    files = [write_raster(directory / f"{b}.tif", bands[b][None]) for b in FILE_ORDER]
    stack = write_raster(directory / "stack.tif", np.stack([bands[b] for b in FILE_ORDER]), FILE_ORDER)
    return {"bands": bands, "valid": valid, "files": files, "stack": stack, "dir": directory}


def data_item(scene: dict, path: Path) -> Path:
    """A STAC Item of the scene: one asset per band file, keyed by common name, bands with names."""
    common = {"B04": "red", "B03": "green", "B08": "nir"}
    assets = {
        common[b]: {"href": f"./scene/{b}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                    "bands": [{"name": b, "eo:common_name": common[b]}]}
        for b in FILE_ORDER
    }  # fmt: skip
    document = {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": "scene",
                "geometry": {"type": "Point", "coordinates": [9.0, 46.0]}, "bbox": [9.0, 46.0, 9.0, 46.0],
                "properties": {"datetime": "2023-06-01T10:00:00Z"}, "links": [], "assets": assets}  # fmt: skip
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def export_seg(directory: Path, *, fmt: str | None = None, **changes) -> Path:
    """A segmentation Item: bands B04 B03 B08, z-score scaling, 3 classes with colours."""
    torch.manual_seed(0)
    options = dict(input_shape=[-1, 3, -1, -1], bands=list(MODEL_BANDS), classes=CLASSES,
                   tasks=["semantic-segmentation"], value_scaling=[{"type": "z-score", "mean": MEAN, "stddev": STD}],
                   bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z")  # fmt: skip
    options.update(changes)
    directory.mkdir(parents=True, exist_ok=True)
    item = export_item(Seg(), artifact_dir=directory, artifact_format=fmt, item_id=f"seg-{fmt or 'st'}", **options)
    return save_item(item, directory / "item.json")


def export_classifier(directory: Path) -> Path:
    torch.manual_seed(1)
    directory.mkdir(parents=True, exist_ok=True)
    item = export_item(TileClassifier(), input_shape=[-1, 3, 32, 32], bands=list(MODEL_BANDS), classes=CLASSES,
                       tasks=["classification"], value_scaling=[{"type": "min-max", "minimum": 0, "maximum": 4000}],
                       bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z", artifact_dir=directory,
                       item_id="tiles")  # fmt: skip
    return save_item(item, directory / "item.json")


def model_stack(scene: dict) -> np.ndarray:
    """The scene in the model's band order, float64."""
    return np.stack([scene["bands"][b] for b in MODEL_BANDS]).astype(np.float64)


class LitSeg(L.LightningModule):
    """A LightningModule around :class:`Seg` (its hyperparameters saved), for ``.ckpt`` Items."""

    def __init__(self, in_channels: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = Seg(in_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def seg_options(**changes) -> dict:
    """export_item arguments of the segmentation Item (bands B04 B03 B08, z-score, 3 classes)."""
    options = dict(input_shape=[-1, 3, -1, -1], bands=list(MODEL_BANDS), classes=CLASSES,
                   tasks=["semantic-segmentation"], value_scaling=[{"type": "z-score", "mean": MEAN, "stddev": STD}],
                   bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z", resize_type="none",
                   none_applies=["pre_processing_function", "post_processing_function"])  # fmt: skip
    options.update(changes)
    return options
