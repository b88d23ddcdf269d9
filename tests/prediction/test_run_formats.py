"""predict() runs every artifact format the adapters write, and an Item read from the local STAC API.

Each case exports the same random 3x3 convolution (bands B04 B03 B08, z-score) in one format and compares the class
map and scores ``predict`` writes with the original module's forward on the whole scene (the receptive field is
one pixel, so overlapping tiles give the whole-scene values).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from scenes import (  # noqa: F401 - scene is a fixture
    MEAN,
    STD,
    LitSeg,
    Seg,
    model_stack,
    scene,
    seg_options,
)

from mlm_export import export_item, predict, save_item, validate_item

FORMATS = ("safetensors", "torch_save_state_dict", "full_model", "lightning_ckpt", "torchscript", "pt2")


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test downloads into its own artifact cache."""


def _export(fmt: str, directory: Path) -> tuple[Path, Seg, dict[str, Any]]:
    """Write format ``fmt`` of a fresh random Seg; returns the Item, the module and predict's load arguments."""
    directory.mkdir(parents=True)
    torch.manual_seed(FORMATS.index(fmt))
    model, kwargs = Seg().eval(), {}
    options = seg_options(item_id=f"seg-{fmt.replace('_', '-')}")
    if fmt in ("safetensors", "torch_save_state_dict", "pt2"):
        artifact = {"torch_save_state_dict": "torch.save", "pt2": "torch.export"}.get(fmt, fmt)
        item = export_item(model, artifact_dir=directory, artifact_format=artifact, **options)
        kwargs = {"model_class": Seg} if fmt != "pt2" else {}
    elif fmt == "torchscript":
        item = export_item(torch.jit.script(model), artifact_dir=directory, **options)
    elif fmt == "full_model":
        torch.save(model, directory / "model.pt")
        item = export_item(directory / "model.pt", trust_pickle=True, **options)
        kwargs = {"trust_pickle": True}
    else:
        lit = LitSeg().eval()
        model = lit.net
        checkpoint = {"state_dict": lit.state_dict(), "hyper_parameters": dict(lit.hparams), "epoch": 0,
                      "global_step": 1, "pytorch-lightning_version": "2.4.0"}  # fmt: skip
        torch.save(checkpoint, directory / "epoch=0-step=1.ckpt")
        kwargs = {"model_class": LitSeg}
        item = export_item(directory / "epoch=0-step=1.ckpt", **options, **kwargs)
    return save_item(item, directory / "item.json"), model, kwargs


def _expected(model: Seg, scene: dict) -> tuple[np.ndarray, np.ndarray]:
    x = (model_stack(scene) - MEAN) / STD
    x[:, ~scene["valid"]] = 0.0
    with torch.no_grad():
        scores = model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    return np.where(scene["valid"], scores.argmax(0), 255), np.where(scene["valid"][None], scores, np.nan)


def _check(out: Path, model: Seg, scene: dict) -> None:
    classes, scores = _expected(model, scene)
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(1), classes)
    with rasterio.open(out.with_name(f"{out.stem}-scores.tif")) as src:
        np.testing.assert_allclose(src.read(), scores, atol=1e-5, equal_nan=True)
    assert validate_item(out.with_suffix(".json")).valid


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_artifact_format_gives_the_module_map(fmt: str, tmp_path: Path, scene: dict) -> None:
    item, model, kwargs = _export(fmt, tmp_path / "model")
    out = tmp_path / f"{fmt}.tif"
    predict(item, scene["files"], out, tile_size=64, overlap=4, scores=True, **kwargs)
    _check(out, model, scene)


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_item_from_the_local_stac_api(tmp_path: Path, scene: dict, stac_api: Any, schema_dir: Path) -> None:
    from loopback import LoopbackServer

    from mlm_export.stac.publish import publish

    item, model, kwargs = _export("safetensors", tmp_path / "site" / "seg")
    with LoopbackServer(tmp_path / "site") as server:
        result = publish([item], stac_api.url, "predict-api", if_exists="replace", href_base=f"{server.url}/seg",
                         schema_dir=schema_dir, progress=False)  # fmt: skip
        url = result.item_url("seg-safetensors")
        out = tmp_path / "api.tif"
        predicted = predict(url, scene["files"], out, tile_size=64, scores=True, **kwargs)
        assert server.hits["/seg/Seg.safetensors"] == 1
    _check(out, model, scene)
    links = json.loads(predicted.item.read_text())["links"]
    assert [link["href"] for link in links if link["rel"] == "derived_from"] == [url]
