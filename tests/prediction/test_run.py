"""predict() against a hand-written numpy reference: select, scale, tile, forward, stitch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from scenes import (  # noqa: F401 - scene is a fixture
    CLASSES,
    MEAN,
    RES,
    STD,
    Seg,
    TileClassifier,
    data_item,
    export_classifier,
    export_seg,
    model_stack,
    scene,
)

from mlm_export import predict, validate_item
from mlm_export.loading import load_model


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _reference_map(item: Path, scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """Whole-scene forward (a 3x3 conv: tiles with overlap give the same values): class values and scores."""
    model = load_model(item, model_class=Seg)
    x = (model_stack(scene) - MEAN) / STD
    x[:, ~scene["valid"]] = 0.0
    with torch.no_grad():
        scores = model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    classes = np.where(scene["valid"], scores.argmax(0), 255).astype(np.uint8)
    return classes, np.where(scene["valid"][None], scores, np.nan)


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), {"crs": src.crs, "transform": src.transform, "nodata": src.nodata,
                            "colormap": src.colormap(1) if src.count == 1 else None,
                            "layout": src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")}  # fmt: skip


def test_segmentation_on_single_band_files_in_another_order(tmp_path: Path, scene: dict) -> None:
    item = export_seg(tmp_path / "model")
    out = tmp_path / "out" / "map.tif"
    out.parent.mkdir()
    result = predict(item, scene["files"], out, model_class=Seg, tile_size=64, overlap=4, scores=True)
    classes, scores = _reference_map(item, scene)
    written, meta = _read(out)
    assert np.array_equal(written[0], classes)
    assert meta["layout"] == "COG" and meta["nodata"] == 255 and str(meta["crs"]) == "EPSG:32632"
    assert meta["transform"] == rasterio.open(scene["files"][0]).transform
    assert meta["colormap"][0][:3] == (0, 0, 255) and meta["colormap"][2][:3] == (255, 0, 0)
    got_scores, _ = _read(out.with_name("map-scores.tif"))
    np.testing.assert_allclose(got_scores, scores, atol=1e-5, equal_nan=True)
    assert result.windows > 1 and result.item == out.with_suffix(".json")
    report = validate_item(result.item)
    assert report.valid, report.problems
    doc = json.loads(result.item.read_text())
    assert doc["properties"]["processing:level"] == "L4"
    assert set(doc["properties"]["processing:software"]) == {"mlm-export", "torch"}
    assert [link["rel"] for link in doc["links"]] == ["derived_from"]
    assert doc["assets"]["data"]["classification:classes"][0]["name"] == CLASSES[0]["name"]
    # the scene's 10 m UTM grid (scenes.RES): the map's resolution in metres
    assert doc["assets"]["data"]["raster:bands"] == [{"data_type": "uint8", "nodata": 255, "spatial_resolution": RES}]


def test_multiband_geotiff_by_band_descriptions_and_onnx(tmp_path: Path, scene: dict) -> None:
    item = export_seg(tmp_path / "model", fmt="onnx")
    out = tmp_path / "map.tif"
    result = predict(item, [scene["stack"]], out, tile_size=64, overlap=2)
    classes, _ = _reference_map(export_seg(tmp_path / "torch-model"), scene)
    written, _ = _read(out)
    assert np.array_equal(written[0], classes)
    doc = json.loads(result.item.read_text())
    assert "onnxruntime" in doc["properties"]["processing:software"]


def test_stac_data_item_through_odc_stac(tmp_path: Path, scene: dict) -> None:
    item = export_seg(tmp_path / "model")
    data = data_item(scene, tmp_path / "scene.json")
    out = tmp_path / "map.tif"
    result = predict(item, data, out, model_class=Seg, tile_size=64)
    classes, _ = _reference_map(item, scene)
    written, _ = _read(out)
    assert np.array_equal(written[0], classes)
    doc = json.loads(result.item.read_text())
    assert len([link for link in doc["links"] if link["rel"] == "derived_from"]) == 2
    assert doc["properties"]["datetime"].startswith("2023-06-01")
    assert validate_item(result.item).valid


def test_fixed_size_classifier_writes_one_feature_per_window(tmp_path: Path, scene: dict) -> None:
    item = export_classifier(tmp_path / "model")
    out = tmp_path / "tiles.geojson"
    result = predict(item, scene["files"], out, model_class=TileClassifier)
    model = load_model(item, model_class=TileClassifier)
    x = model_stack(scene) / 4000.0
    x[:, ~scene["valid"]] = 0.0
    expected = []
    for row in range(0, 120, 32):
        for col in range(0, 90, 32):
            if not scene["valid"][row : row + 32, col : col + 32].any():
                continue
            window = np.zeros((3, 32, 32))
            part = x[:, row : row + 32, col : col + 32]
            window[:, : part.shape[1], : part.shape[2]] = part
            with torch.no_grad():
                logits = model(torch.from_numpy(window[None].astype(np.float32)))[0].numpy()
            expected.append((row, col, int(logits.argmax()), float(logits.max())))
    features = json.loads(out.read_text())["features"]
    got = [(f["properties"]["row"], f["properties"]["col"], f["properties"]["class_value"],
            f["properties"]["score"]) for f in features]  # fmt: skip
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    np.testing.assert_allclose([g[3] for g in got], [e[3] for e in expected], atol=1e-5)
    assert result.skipped == 1 and result.windows == 11
    assert features[0]["properties"]["class_name"] == CLASSES[features[0]["properties"]["class_value"]]["name"]
    assert validate_item(result.item).valid


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_model_item_served_over_loopback_http(tmp_path: Path, scene: dict) -> None:
    from loopback import LoopbackServer

    served = tmp_path / "served"
    export_seg(served)
    document = json.loads((served / "item.json").read_text())
    for asset in document["assets"].values():
        asset["href"] = "./" + Path(asset["href"]).name
    (served / "item.json").write_text(json.dumps(document))
    out = tmp_path / "map.tif"
    with LoopbackServer(served) as server:
        result = predict(f"{server.url}/item.json", scene["files"], out, model_class=Seg, tile_size=64)
        assert server.hits["/Seg.safetensors"] == 1
    classes, _ = _reference_map(served / "item.json", scene)
    assert np.array_equal(_read(out)[0][0], classes)
    links = json.loads(result.item.read_text())["links"]
    assert links[0]["href"] == f"{server.url}/item.json"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_map(tmp_path: Path, scene: dict) -> None:
    item = export_seg(tmp_path / "model")
    predict(item, scene["files"], tmp_path / "cpu.tif", model_class=Seg, tile_size=64, scores=True)
    predict(item, scene["files"], tmp_path / "gpu.tif", model_class=Seg, tile_size=64, scores=True, device="cuda")
    np.testing.assert_allclose(_read(tmp_path / "gpu-scores.tif")[0], _read(tmp_path / "cpu-scores.tif")[0],
                               atol=1e-4, equal_nan=True)  # fmt: skip
    assert np.array_equal(_read(tmp_path / "gpu.tif")[0], _read(tmp_path / "cpu.tif")[0])
