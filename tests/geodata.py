"""Synthetic GeoTIFFs in UTM zone 32N and torchgeo datasets/datamodules over them (seeded, written to tmp dirs).

Three splits, one tile each, at different places and dates so that the extent and time span are really unions:

* ``train``: 96 x 96 px at 10 m, 2023-01-05
* ``val``:   64 x 64 px, 1.5 km east, 2023-06-10
* ``test``:  64 x 64 px, 2 km south, 2023-09-20

Images have 4 uint16 bands (``B02 B03 B04 B08``), masks one uint8 band with classes 0..2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from torchgeo.datamodules import GeoDataModule
from torchgeo.datasets import IntersectionDataset, RasterDataset
from torchgeo.samplers import GridGeoSampler, RandomBatchGeoSampler

CRS = "EPSG:32632"
RES = 10.0
BANDS = ("B02", "B03", "B04", "B08")
CLASSES = ("water", "forest", "urban")
#: split -> (west, north, size in px, date)
TILES: dict[str, tuple[float, float, int, str]] = {
    "train": (500_000.0, 5_100_000.0, 96, "20230105"),
    "val": (501_500.0, 5_100_000.0, 64, "20230610"),
    "test": (500_000.0, 5_098_000.0, 64, "20230920"),
}
#: Per-band normalisation the datamodules apply (``on_after_batch_transfer``).
MEAN = (1200.0, 1100.0, 1000.0, 2500.0)
STD = (400.0, 380.0, 420.0, 900.0)


def _write(path: Path, data: np.ndarray, west: float, north: float) -> None:
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": data.dtype.name,
        "crs": CRS,
        "transform": from_origin(west, north, RES, RES),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def write_scene(root: Path, seed: int = 0) -> dict[str, tuple[float, float, float, float]]:
    """Write ``root/<split>/image_<date>.tif`` and ``mask_<date>.tif``; return each split's bounds in :data:`CRS`."""
    rng = np.random.default_rng(seed)
    bounds = {}
    for split, (west, north, size, date) in TILES.items():
        directory = root / split
        directory.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 4000, size=(len(BANDS), size, size), dtype=np.uint16)
        mask = rng.integers(0, len(CLASSES), size=(1, size, size), dtype=np.uint8)
        _write(directory / f"image_{date}.tif", image, west, north)
        _write(directory / f"mask_{date}.tif", mask, west, north)
        bounds[split] = (west, north - size * RES, west + size * RES, north)
    return bounds


class SynthImage(RasterDataset):
    """The 4-band images."""

    filename_glob = "image_*.tif"
    filename_regex = r"^image_(?P<date>\d{8})\.tif$"
    date_format = "%Y%m%d"
    is_image = True
    all_bands = BANDS


class SynthMask(RasterDataset):
    """The class masks."""

    filename_glob = "mask_*.tif"
    filename_regex = r"^mask_(?P<date>\d{8})\.tif$"
    date_format = "%Y%m%d"
    is_image = False
    classes = CLASSES


def add_label(sample: dict[str, Any]) -> dict[str, Any]:
    """A scene label for classification: derived from the patch's mean (a plain function, not a transform)."""
    sample["label"] = torch.tensor(int(sample["image"].mean().item()) % len(CLASSES))
    return sample


class SynthDataModule(GeoDataModule):
    """Segmentation (image & mask) or classification (image + label) patches over :func:`write_scene` tiles."""

    mean = torch.tensor(MEAN)
    std = torch.tensor(STD)

    def __init__(
        self, root: Path, *, kind: str = "segmentation", batch_size: int = 2, patch_size: int = 64, length: int = 4
    ) -> None:
        super().__init__(SynthImage, batch_size=batch_size, patch_size=patch_size, length=length, num_workers=0)
        self.root = Path(root)
        self.kind = kind

    def _dataset(self, split: str) -> Any:
        if self.kind == "classification":
            return SynthImage(paths=self.root / split, transforms=add_label)
        return IntersectionDataset(SynthImage(paths=self.root / split), SynthMask(paths=self.root / split))

    def setup(self, stage: str) -> None:
        """Set up the split datasets and samplers."""
        if stage == "fit":
            self.train_dataset = self._dataset("train")
            self.train_batch_sampler = RandomBatchGeoSampler(
                self.train_dataset, self.patch_size, self.batch_size, self.length
            )
        if stage in ("fit", "validate"):
            self.val_dataset = self._dataset("val")
            self.val_sampler = GridGeoSampler(self.val_dataset, self.patch_size, self.patch_size)
        if stage == "test":
            self.test_dataset = self._dataset("test")
            self.test_sampler = GridGeoSampler(self.test_dataset, self.patch_size, self.patch_size)
