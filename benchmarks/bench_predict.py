"""``predict`` against its floor, its peak RSS across scene sizes, a 2-worker LocalCluster, and lazy planning.

Run: ``.venv/bin/python benchmarks/bench_predict.py [--size 4096] [--repeat 3] [--parts time,dask,rss,plan]``.
A 4-band uint16 ``size`` x ``size`` GeoTIFF and a small segmentation net (TorchScript: 3x3 conv 4->16, ReLU, 3x3
conv 16->16, ReLU, 1x1 conv 16->3; z-score scaling) (``tests/predict_child.py`` writes both), 512 px tiles with
predict's default 16 px overlap. Times are the best of ``--repeat`` runs, interleaved (ours, floor, cluster):

* time: ``predict`` (read, scale, forward, class map, COG and Item; the model loaded and verified) vs the floor:
  rasterio window reads of the same tiles (boundless, padded) + float32 cast + the same forwards in the same batches
  (predict's batch size) with the model loaded beforehand. Target <= 1.15.
* peak RSS: a child process (``tests/predict_child.py``) at ``size`` vs one at ``size / 2``. Target <= +10 %.
* dask: ``predict(client=...)`` on a ``LocalCluster`` of 2 single-threaded worker processes vs the in-process run
  (torch uses every core in-process: this bounds dask's overhead). The cluster is warmed as the process is (a run
  on the warm-up raster; every worker imports the modules the caller has), and each measured run loads the model on
  each worker (counted: 1 each). Target <= 1.15.
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
#: What :func:`measure` measures: time vs the floor, dask vs in-process, peak RSS across sizes, lazy planning.
PARTS = ("time", "dask", "rss", "plan")


def _batch(item: Path, raster: Path) -> int:
    """The batch size ``predict`` plans for this Item and raster (the floor runs the same batches)."""
    from mlm_export.prediction import lazy, run
    from mlm_export.prediction.sources import read_scene
    from mlm_export.prediction.spec import input_spec, output_spec

    doc = json.loads(item.read_text())
    scene = read_scene([raster], ["B02", "B03", "B04", "B08"], {}, chunks=lazy.DEFAULT_CHUNKS)
    return run._plan(doc, input_spec(doc), output_spec(doc), scene, {"tile_size": TILE, "overlap": OVERLAP}).batch


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


def measure(size: int = 4096, *, width: int = 16, repeat: int = 1, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Every figure of the module docstring (seconds: the best of ``repeat`` interleaved runs; bytes, counts)."""
    from predict_child import segmentation_item, write_scene

    r: dict[str, Any] = {"size": size, "repeat": repeat}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        os.environ.setdefault("MLM_EXPORT_CACHE_DIR", str(directory / "cache"))
        item = segmentation_item(directory / "model", width=width)
        raster = write_scene(directory / "scene.tif", size)
        warmup = write_scene(directory / "warmup.tif", 256)
        _predict(item, warmup, directory / "warm.tif")
        if "time" in parts or "dask" in parts:
            r.update(_times(item, raster, warmup, directory, repeat, "dask" in parts))
        if "rss" in parts:
            half = write_scene(directory / "half.tif", size // 2)
            r["peak_large"] = _child(item, raster, directory / "rss-large.tif", warmup)["peak"]
            r["peak_small"] = _child(item, half, directory / "rss-small.tif", warmup)["peak"]
        if "plan" in parts:
            r["planning_s"] = _planning(item, directory, 40_000)
    r["load"] = os.getloadavg()[0]
    return r


def _times(item: Path, raster: Path, warmup: Path, directory: Path, repeat: int,
           cluster: bool) -> dict[str, Any]:  # fmt: skip
    """Best of ``repeat`` of: predict in-process, the floor, predict on a 2 x 1-thread LocalCluster, interleaved."""
    from distributed import Client, LocalCluster

    from mlm_export.prediction import lazy

    batch = _batch(item, raster)
    ours, floor, distributed, cpu = [], [], [], {"ours": [], "floor": [], "cluster": []}
    options = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
               "dashboard_address": None}  # fmt: skip
    with LocalCluster(**options) as local, Client(local) as client:
        _predict(item, warmup, directory / "cluster-warm.tif", client)  # warmed as the in-process run is
        client.run(_import, sorted(n for n in sys.modules if "." not in n or n.startswith(("torch", "mlm_export"))))
        for _ in range(repeat):
            start = _cpu()
            seconds, result = _predict(item, raster, directory / "ours.tif")
            ours.append(seconds)
            cpu["ours"].append(_cpu() - start)
            start = _cpu()
            floor.append(_floor(item, raster, batch))
            cpu["floor"].append(_cpu() - start)
            if cluster:
                client.run(lazy.forget_all)  # every measured cluster run loads the model on each worker (counted)
                start = _cpu() + sum(client.run(_cpu).values())
                distributed.append(_predict(item, raster, directory / "cluster.tif", client)[0])
                cpu["cluster"].append(_cpu() + sum(client.run(_cpu).values()) - start)
                loads = [n for per in client.run(lazy.loads).values() for n in per.values()]
        threads = client.run(lambda: __import__("torch").get_num_threads())
    import torch

    r = {"windows": result.windows, "batch": batch, "ours_s": min(ours), "floor_s": min(floor),
         "ours_cpu_s": min(cpu["ours"]), "floor_cpu_s": min(cpu["floor"]), "torch_threads": torch.get_num_threads(),
         "worker_threads": sorted(threads.values())}  # fmt: skip
    if cluster:
        r.update(cluster_s=min(distributed), cluster_cpu_s=min(cpu["cluster"]), loads=loads)
    return r


def _import(names: list[str]) -> None:
    """Import what the caller has imported (a warm-up run on one window warms one worker only)."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - what a worker cannot import, the run does not need there
            continue


def _cpu() -> float:
    """CPU seconds of this process, every thread (a busy machine stretches wall time, much less CPU time)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="pixels per side of the scene (default 4096)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs; the best of each is kept")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)} (default: all)")
    args = parser.parse_args()
    print(json.dumps(measure(args.size, repeat=args.repeat, parts=tuple(args.parts.split(","))), indent=1))


if __name__ == "__main__":
    main()
