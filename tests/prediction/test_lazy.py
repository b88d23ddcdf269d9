"""predict as a lazy dask computation: streaming (flat peak RSS), distributed == local bit for bit, one load each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scenes import Seg, export_seg, scene  # noqa: F401 - scene is a fixture

from mlm_export import predict
from mlm_export.errors import DataError
from mlm_export.prediction import lazy, run
from mlm_export.prediction.sources import read_scene
from mlm_export.prediction.spec import input_spec, output_spec

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from predict_child import segmentation_item, write_scene  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _child(item: Path, raster: Path, out: Path, warmup: Path) -> dict:
    # a fixed mmap threshold: glibc's sliding one keeps freed batch buffers in the heap, noise of +-8 % in the peak
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
           "MALLOC_MMAP_THRESHOLD_": "1048576"}  # fmt: skip
    command = [sys.executable, str(TESTS / "predict_child.py"), str(item), str(raster), str(out), "256", str(warmup)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_peak_rss_does_not_grow_with_the_scene(tmp_path: Path) -> None:
    item = segmentation_item(tmp_path / "model", width=4)
    warmup = write_scene(tmp_path / "warmup.tif", 256)
    small = _child(item, write_scene(tmp_path / "small.tif", 1024), tmp_path / "small-out.tif", warmup)
    large = _child(item, write_scene(tmp_path / "large.tif", 2048), tmp_path / "large-out.tif", warmup)
    assert large["windows"] > 3 * small["windows"]
    # the whole-scene code before streaming added ~150 bytes per pixel: +600 MB at 2048^2
    assert large["peak"] <= 1.10 * small["peak"], (small, large)
    with rasterio.open(tmp_path / "large-out.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and src.shape == (2048, 2048)
        centre = src.read(1, window=rasterio.windows.Window(1000, 1000, 48, 48))
        assert (centre == 255).all()  # the nodata square carried to the output


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_distributed_equals_local_bit_for_bit_and_loads_once_per_worker(tmp_path: Path, scene: dict) -> None:
    distributed = pytest.importorskip("distributed")
    item = export_seg(tmp_path / "model")
    local = predict(item, scene["files"], tmp_path / "local.tif", model_class=Seg, tile_size=16, overlap=2,
                    scores=True, chunks=40)  # fmt: skip
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = predict(item, scene["files"], tmp_path / "remote.tif", model_class=Seg, tile_size=16, overlap=2,
                         scores=True, chunks=40, client=client)  # fmt: skip
        loads = client.run(lazy.loads)
    assert (remote.windows, remote.skipped) == (local.windows, local.skipped) and local.skipped > 0
    assert np.array_equal(_read(tmp_path / "remote.tif"), _read(tmp_path / "local.tif"))
    assert np.array_equal(_read(tmp_path / "remote-scores.tif"), _read(tmp_path / "local-scores.tif"), equal_nan=True)
    batches = -(-(local.windows + local.skipped) // 16)
    counts = [n for per_worker in loads.values() for n in per_worker.values()]
    assert len(loads) == 2 and counts and all(n == 1 for n in counts) and batches > len(counts)


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_an_error_raised_on_a_worker_reaches_the_caller_typed_with_its_hint(tmp_path: Path, scene: dict) -> None:
    distributed = pytest.importorskip("distributed")
    document = json.loads(export_seg(tmp_path / "model").read_text())
    document["properties"]["mlm:input"][0]["input"]["data_type"] = "uint8"  # reflectance into uint8, unscaled: refused
    document["properties"]["mlm:input"][0].pop("value_scaling")
    item = tmp_path / "model" / "uint8.json"
    item.write_text(json.dumps(document))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        pytest.raises(DataError, match=r"outside uint8's range") as caught,
    ):
        predict(item, scene["files"], tmp_path / "map.tif", model_class=Seg, tile_size=16, overlap=2, client=client)
    assert caught.value.hint == "Check the data (units, scale) against the Item's value_scaling."
    assert str(caught.value).endswith("Hint: " + caught.value.hint)
    assert not (tmp_path / "map.tif").exists()


def test_a_large_raster_is_planned_without_reading_it(tmp_path: Path) -> None:
    side = 20_000
    profile = {"driver": "GTiff", "height": side, "width": side, "count": 4, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32632", "transform": rasterio.transform.from_origin(500_000, 5_100_000, 10, 10),
               "tiled": True, "sparse_ok": True}  # fmt: skip
    raster = tmp_path / "virtual.tif"
    with rasterio.open(raster, "w", **profile) as dst:
        for index, name in enumerate(("B02", "B03", "B04", "B08"), start=1):
            dst.set_band_description(index, name)
    assert raster.stat().st_size < 10_000_000  # sparse: 1.6 GB of pixels never written
    item = segmentation_item(tmp_path / "model", width=4)
    doc = json.loads(item.read_text())
    start = time.perf_counter()
    spec, out = input_spec(doc), output_spec(doc)
    lazy_scene = read_scene([raster], ["B02", "B03", "B04", "B08"], {}, chunks=2048)
    plan = run._plan(doc, spec, out, lazy_scene, {"tile_size": 1024})
    job = lazy.Job(lazy.model_source(item, doc, "cpu"), spec, out, tuple(lazy_scene.names), plan.tile, False)
    graph = lazy.build(job, lazy_scene.data, lazy_scene.valid, plan.windows, plan.batch)
    seconds = time.perf_counter() - start
    assert len(plan.windows) == 21 * 21 and len(graph) == -(-len(plan.windows) // plan.batch)
    assert seconds < 60, seconds
