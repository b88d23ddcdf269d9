"""Child process of the streaming test and the predict benchmark: one ``predict`` run's peak RSS and time.

``python predict_child.py ITEM RASTER OUT TILE [WARMUP_RASTER]`` runs ``predict`` once on WARMUP_RASTER (imports,
kernels: the interpreter baseline), resets the process's peak RSS (``/proc/self/clear_refs``), then runs it on
RASTER with ``tile_size=TILE`` and prints one JSON line: ``{"peak", "before", "seconds", "windows"}`` (bytes: peak RSS
of the run and RSS before it). The Item's model is a TorchScript file (no class to import).

:func:`write_scene` writes the rasters strip by strip (4-band uint16 reflectance, band descriptions B02 B03 B04 B08,
a tiled GeoTIFF on UTM 32N), so the parent never holds a large one either; :func:`segmentation_item` exports a small
segmentation net over those bands.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

BANDS = ("B02", "B03", "B04", "B08")


def write_scene(path: Path, size: int, *, seed: int = 3, strip: int = 256) -> Path:
    """A ``size`` x ``size`` 4-band uint16 GeoTIFF (values 1..4000, a nodata square at the centre), strip by strip."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": len(BANDS), "dtype": "uint16",
               "crs": "EPSG:32632", "transform": from_origin(500_000.0, 5_100_000.0, 10.0, 10.0), "nodata": 0,
               "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    hole = slice(size // 2 - size // 16, size // 2 + size // 16)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, strip):
            rows = min(strip, size - row)
            values = rng.integers(1, 4000, size=(len(BANDS), rows, size), dtype=np.uint16)
            for r in range(rows):
                if hole.start <= row + r < hole.stop:
                    values[:, r, hole] = 0
            dst.write(values, window=Window(0, row, size, rows))
        for index, name in enumerate(BANDS, start=1):
            dst.set_band_description(index, name)
    return path


def segmentation_item(directory: Path, *, width: int = 16) -> Path:
    """A small segmentation net (3x3 conv 4->width, ReLU, 3x3 conv width->width, ReLU, 1x1 conv ->3) as TorchScript."""
    import torch
    from torch import nn

    from mlm_export import export_item, save_item

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(width, 3, 1))  # fmt: skip
    classes = [{"name": n, "value": v} for v, n in enumerate(("water", "forest", "urban"))]
    directory.mkdir(parents=True, exist_ok=True)
    item = export_item(torch.jit.script(net.eval()), input_shape=[-1, 4, -1, -1], bands=list(BANDS), classes=classes,
                       tasks=["semantic-segmentation"], artifact_format="torchscript", artifact_dir=directory,
                       value_scaling=[{"type": "z-score", "mean": 1000.0, "stddev": 400.0}], item_id="bench-seg",
                       bbox=[9.0, 46.0, 9.1, 46.1], datetime="2024-01-01T00:00:00Z")  # fmt: skip
    return save_item(item, directory / "item.json")


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]


def main() -> None:
    from mlm_export import predict

    item, raster, out, tile = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    if len(sys.argv) > 5:
        warm = out.with_name(f"{out.stem}-warmup.tif")
        predict(item, [sys.argv[5]], warm, tile_size=tile, overwrite=True, progress=False)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    result = predict(item, [raster], out, tile_size=tile, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"peak": _status("VmHWM"), "before": before, "seconds": seconds, "windows": result.windows}))


if __name__ == "__main__":
    main()
