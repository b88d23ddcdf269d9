"""``predict`` against its floor, its peak RSS across scene sizes, a 2-worker LocalCluster, and lazy planning.

Run: ``.venv/bin/python benchmarks/bench_predict.py [--size 4096]``. A 4-band uint16 ``size`` x ``size`` GeoTIFF and a
small segmentation net (TorchScript: 3x3 conv 4->16, ReLU, 3x3 conv 16->16, ReLU, 1x1 conv 16->3; z-score scaling)
(``tests/predict_child.py`` writes both), 512 px tiles with predict's default 16 px overlap:

* time: ``predict`` (read, scale, forward, class map, COG and Item) vs the floor: rasterio window reads of the
  same tiles (boundless, padded) + float32 cast + the same forwards in the same batches. Target <= 1.15.
* peak RSS: a child process (``tests/predict_child.py``) at ``size`` vs one at ``size / 2``. Target <= +10 %.
* dask: ``predict(client=...)`` on a ``LocalCluster`` of 2 single-threaded worker processes vs the in-process run
  (torch already uses every core in-process: this bounds dask's overhead). Target <= 1.15; loads per worker (1).
* planning: ``predict``'s lazy graph over a sparse 40,000 x 40,000 4-band GeoTIFF (nothing read). Target < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))
TILE, OVERLAP = 512, 16


def _floor(item: Path, raster: Path, batch: int) -> float:
    """Seconds of rasterio window reads of predict's tiles + the same forwards (the model loaded beforehand)."""
    import numpy as np
    import rasterio
    import torch
    from rasterio.windows import Window

    from mlm_export.prediction import tiling

    model = torch.jit.load(str(next(item.parent.glob("*.pt")))).eval()
    start = time.perf_counter()
    with rasterio.open(raster) as src:
        windows = tiling.windows(src.shape, (TILE, TILE), OVERLAP)
        for group in tiling.batches(windows, batch):
            reads = [src.read(window=Window(w.col, w.row, TILE, TILE), boundless=True, fill_value=0) for w in group]
            with torch.inference_mode():
                model(torch.from_numpy(np.stack(reads).astype(np.float32)))
    return time.perf_counter() - start


def _predict(item: Path, raster: Path, out: Path, client: Any = None) -> tuple[float, Any]:
    from mlm_export import predict

    start = time.perf_counter()
    result = predict(item, [raster], out, tile_size=TILE, overlap=OVERLAP, overwrite=True, progress=False,
                     client=client)  # fmt: skip
    return time.perf_counter() - start, result


def _child(item: Path, raster: Path, out: Path, warmup: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(TESTS)]),
           "MALLOC_MMAP_THRESHOLD_": "1048576"}  # fmt: skip
    command = [
        sys.executable,
        str(TESTS / "predict_child.py"),
        str(item),
        str(raster),
        str(out),
        str(TILE),
        str(warmup),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _planning(item: Path, directory: Path, side: int) -> float:
    """Seconds to build predict's graph over a sparse ``side`` x ``side`` raster (nothing computed)."""
    import rasterio
    from rasterio.transform import from_origin

    from mlm_export.prediction import lazy, run
    from mlm_export.prediction.sources import read_scene
    from mlm_export.prediction.spec import input_spec, output_spec

    path = directory / "virtual.tif"
    profile = {"driver": "GTiff", "height": side, "width": side, "count": 4, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32632", "transform": from_origin(500_000, 5_100_000, 10, 10), "tiled": True,
               "sparse_ok": True, "bigtiff": "YES"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for index, name in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(index, name)
    doc = json.loads(item.read_text())
    start = time.perf_counter()
    spec, out = input_spec(doc), output_spec(doc)
    scene = read_scene([path], ["B02", "B03", "B04", "B08"], {}, chunks=lazy.DEFAULT_CHUNKS)
    plan = run._plan(doc, spec, out, scene, {})  # the tile the memory cap chooses (1024 px here)
    job = lazy.Job(lazy.model_source(item, doc, "cpu"), spec, out, tuple(scene.names), plan.tile, False)
    lazy.build(job, scene.data, scene.valid, plan.windows, plan.batch)
    return time.perf_counter() - start


def measure(size: int = 4096, *, width: int = 16) -> dict[str, Any]:
    """Every figure of the module docstring (seconds, bytes, counts)."""
    from distributed import Client, LocalCluster
    from predict_child import segmentation_item, write_scene

    from mlm_export.prediction import lazy

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        os.environ.setdefault("MLM_EXPORT_CACHE_DIR", str(directory / "cache"))
        item = segmentation_item(directory / "model", width=width)
        raster, half = write_scene(directory / "scene.tif", size), write_scene(directory / "half.tif", size // 2)
        warmup = write_scene(directory / "warmup.tif", 256)
        _predict(item, warmup, directory / "warm.tif")
        ours, result = _predict(item, raster, directory / "ours.tif")
        floor = _floor(item, raster, 16)
        options = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
                   "dashboard_address": None}  # fmt: skip
        with LocalCluster(**options) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("torch"))  # workers import torch before the clock starts
            cluster_s, _ = _predict(item, raster, directory / "cluster.tif", client)
            loads = [n for per in client.run(lazy.loads).values() for n in per.values()]
        large = _child(item, raster, directory / "rss-large.tif", warmup)
        small = _child(item, half, directory / "rss-small.tif", warmup)
        planning = _planning(item, directory, 40_000)
    return {"size": size, "windows": result.windows, "ours_s": ours, "floor_s": floor, "cluster_s": cluster_s,
            "loads": loads, "peak_large": large["peak"], "peak_small": small["peak"], "planning_s": planning,
            "load": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="pixels per side of the scene (default 4096)")
    r = measure(parser.parse_args().size)
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
