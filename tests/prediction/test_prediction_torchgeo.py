"""predict() against torchgeo's own pipeline: RasterDataset + GridGeoSampler + the weights' transforms + forward.

The model is exported with :func:`~mlm_export.integrations.torchgeo.export_torchgeo` and torchgeo's Satlas
Sentinel-2 weights member (``Swin_V2_T_Weights.SENTINEL2_MI_MS_SATLAS``: 9 bands B04 B03 B02 B05 B06 B07 B08 B11
B12, per-band statistics ``Normalize(0, [255 x 3, 8160 x 6])``, ``CenterCrop(256)``), read through ``meta`` and
``transforms`` only: the network is a small random convolution, nothing is downloaded. The scene is a 13-band
Sentinel-2-like uint16 GeoTIFF (UTM 32N, bands in the sensor's order, nodata holes in every band) written here.
torchgeo reads it with its own ``RasterDataset`` (``all_bands``/``bands`` pick the weights' bands), cuts 256 px
windows with ``GridGeoSampler``, applies ``member.transforms`` and the forward; ``predict`` must give the same map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from mlm_export import predict, save_item, validate_item
from mlm_export.demo import SENTINEL2_BANDS

pytest.importorskip("torchgeo")

WEST, NORTH, RES = 600_000.0, 5_200_000.0, 10.0
HEIGHT, WIDTH, TILE = 256, 512, 256
CLASSES = [{"name": "other", "value": 0}, {"name": "field", "value": 1}]


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


class SmallSeg(nn.Module):
    """Two 3x3 convolutions, 9 bands -> 2 class scores, any height/width."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(9, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _scene(directory: Path) -> tuple[Path, np.ndarray]:
    """A 13-band uint16 GeoTIFF in Sentinel-2 order with band descriptions; returns it and its valid mask."""
    rng = np.random.default_rng(11)
    data = rng.integers(1, 9000, size=(13, HEIGHT, WIDTH), dtype=np.uint16)
    valid = np.ones((HEIGHT, WIDTH), dtype=bool)
    valid[100:130, 300:340] = False
    data[:, ~valid] = 0
    path = directory / "S2_20230601_T32TMT.tif"
    profile = {"driver": "GTiff", "height": HEIGHT, "width": WIDTH, "count": 13, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32632", "transform": from_origin(WEST, NORTH, RES, RES)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(SENTINEL2_BANDS, start=1):
            dst.set_band_description(index, name)
    return path, valid


def _torchgeo_map(path: Path, member: object, model: nn.Module) -> np.ndarray:
    """Class scores [2, H, W] by torchgeo's pipeline: RasterDataset, GridGeoSampler, the weights' transforms."""
    from torchgeo.datasets import RasterDataset
    from torchgeo.samplers import GridGeoSampler

    class Sentinel2Scene(RasterDataset):
        filename_glob = "S2_*.tif"
        all_bands = SENTINEL2_BANDS

    dataset = Sentinel2Scene(paths=[str(path)], bands=member.meta["bands"])
    scores = np.full((2, HEIGHT, WIDTH), np.nan, dtype=np.float32)
    sampler = GridGeoSampler(dataset, size=TILE, stride=TILE)
    for query in sampler:
        image = dataset[query]["image"].float()[None]
        with torch.no_grad():
            out = model(member.transforms(image))[0].numpy()
        row = round((NORTH - query[1].stop) / RES)
        col = round((query[0].start - WEST) / RES)
        scores[:, row : row + TILE, col : col + TILE] = out
    assert len(sampler) == (HEIGHT // TILE) * (WIDTH // TILE)
    return scores


def test_predict_equals_torchgeo_raster_dataset_grid_sampler_and_weights_transforms(tmp_path: Path) -> None:
    from torchgeo.models import Swin_V2_T_Weights

    from mlm_export.integrations.torchgeo import export_torchgeo

    member = Swin_V2_T_Weights.SENTINEL2_MI_MS_SATLAS
    torch.manual_seed(3)
    model = SmallSeg().eval()
    item = export_torchgeo(model, weights=member, artifact_dir=tmp_path / "model", tasks=["semantic-segmentation"],
                           classes=CLASSES, bbox=[9.0, 46.0, 10.0, 47.0], datetime="2024-01-01T00:00:00Z")  # fmt: skip
    spec = item.properties["mlm:input"][0]
    assert spec["bands"] == list(member.meta["bands"])  # the weights' order, not the file's
    assert [v["stddev"] for v in spec["value_scaling"]] == [255.0] * 3 + [8160.0] * 6
    item_path = save_item(item, tmp_path / "model" / "item.json")
    scene, valid = _scene(tmp_path)

    result = predict(item_path, [scene], tmp_path / "map.tif", model_class=SmallSeg, tile_size=TILE, overlap=0,
                     scores=True)  # fmt: skip
    expected = _torchgeo_map(scene, member, model)
    with rasterio.open(tmp_path / "map-scores.tif") as src:
        got = src.read()
    assert result.windows == 2
    np.testing.assert_allclose(got[:, valid], expected[:, valid], rtol=0, atol=1e-5)
    assert np.isnan(got[:, ~valid]).all()
    with rasterio.open(tmp_path / "map.tif") as src:
        classes = src.read(1)
    assert np.array_equal(classes[valid], expected.argmax(0)[valid])
    assert validate_item(result.item).valid
