"""Every artifact format the adapters write x every transport x (load_model, check_item, `mlm-export get`).

Each model is tiny, random and exported once per module; each test gets its own empty artifact cache, so every
remote case really downloads. Real servers only: a loopback HTTP server, moto's S3 server, the local STAC API.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import obstore
import pystac_client
import pytest
import torch
import torch_models as tm
from loopback import LoopbackServer
from moto_s3 import s3_bucket_at, s3_endpoint  # noqa: F401 - s3_endpoint is a fixture
from safetensors.torch import save_file

from mlm_export import check_item, export_item, load_model, save_item
from mlm_export.cli import main
from mlm_export.stac.publish import publish
from mlm_export.transfer import upload_artifacts

# Loopback servers only; an empty artifact cache per test (conftest.cache_dir): every remote case downloads.
pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("cache_dir")]

FORMATS = ("safetensors", "state_dict", "full_model", "lightning_ckpt", "scripted", "traced", "pt2", "onnx",
           "onnx_inline", "onnx_external_data", "sharded_safetensors")  # fmt: skip
TRANSPORTS = ("path", "file_href", "http", "s3", "api_url", "api_hit")
COLLECTION = "loading-matrix"
MLP = {"in_features": 6, "num_classes": 3}


def sha256_multihash(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Built:
    """One exported format: its directory (item.json + files), how to load it and the original model's output."""

    name: str
    directory: Path
    kwargs: dict[str, Any]
    example: torch.Tensor
    expected: np.ndarray
    item_id: str = ""
    assets: dict[str, Any] = field(default_factory=dict)


def _tiny(seed: int) -> tm.TinyMLP:
    torch.manual_seed(seed)
    return tm.TinyMLP(**MLP).eval()


def _export(model: Any, directory: Path, item_id: str, **arguments: Any) -> None:
    item = export_item(model, input_shape=[-1, 6], item_id=item_id, **arguments)
    save_item(item, directory / "item.json")


def _write_sharded(directory: Path, state: dict[str, torch.Tensor], shards: int) -> Path:
    weight_map, keys = {}, list(state)
    for number in range(shards):
        name = f"model-{number + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[number::shards]}
        save_file(part, str(directory / name))
        weight_map.update(dict.fromkeys(part, name))
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def _build(name: str, directory: Path, seed: int) -> Built:
    """Write format ``name`` of a fresh random model into ``directory``; the Item is ``directory/item.json``."""
    directory.mkdir(parents=True)
    model, kwargs, item_id = _tiny(seed), {}, f"matrix-{name.replace('_', '-')}"
    rebuild = {"model_class": tm.TinyMLP, "model_kwargs": MLP}
    example = torch.randn(2, 6, generator=torch.Generator().manual_seed(seed))
    if name in ("safetensors", "state_dict", "pt2", "onnx"):  # onnx: the adapter writes model.onnx + .onnx.data
        fmt = {"state_dict": "torch.save", "pt2": "torch.export"}.get(name, name)
        _export(model, directory, item_id, artifact_dir=directory, artifact_format=fmt)
        kwargs = rebuild if name in ("safetensors", "state_dict") else {}
    elif name == "full_model":
        torch.save(model, directory / "model.pt")
        _export(directory / "model.pt", directory, item_id, trust_pickle=True)
        kwargs = {"trust_pickle": True}
    elif name == "lightning_ckpt":
        torch.manual_seed(seed)
        model = tm.LitClassifier(**MLP).eval()
        checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": 0,
                      "global_step": 1, "pytorch-lightning_version": "2.4.0"}  # fmt: skip
        torch.save(checkpoint, directory / "epoch=0-step=1.ckpt")
        kwargs = {"model_class": tm.LitClassifier, "model_kwargs": MLP}
        _export(directory / "epoch=0-step=1.ckpt", directory, item_id, **kwargs)
    elif name in ("scripted", "traced"):
        compiled = torch.jit.script(model) if name == "scripted" else torch.jit.trace(model, (example,))
        _export(compiled, directory, item_id, artifact_dir=directory)
    elif name in ("onnx_inline", "onnx_external_data"):
        path, external = directory / "model.onnx", name == "onnx_external_data"
        batch = torch.export.Dim("batch")
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=external,
                          dynamic_shapes=({0: batch},), verbose=False)  # fmt: skip
        assert (directory / "model.onnx.data").is_file() == external
        _export(path, directory, item_id)
    elif name == "sharded_safetensors":
        kwargs = rebuild
        _export(_write_sharded(directory, model.state_dict(), 2), directory, item_id, **kwargs)
    with torch.no_grad():
        expected = model(example).numpy()
    document = json.loads((directory / "item.json").read_text())
    return Built(name, directory, kwargs, example, expected, document["id"], document["assets"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="module")
def formats(site: Path) -> Callable[[str], Built]:
    """Each format built once per module, on first use."""
    built: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in built:
            built[name] = _build(name, site / name, seed=FORMATS.index(name))
        return built[name]

    return get


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[LoopbackServer]:
    with LoopbackServer(site) as running:
        yield running


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    with s3_bucket_at(s3_endpoint, "loading-matrix") as name:
        yield name


def _file_href_item(built: Built) -> Path:
    """A copy of the Item next to it whose hrefs are absolute ``file://`` URLs."""
    document = json.loads((built.directory / "item.json").read_text())
    for asset in document["assets"].values():
        asset["href"] = (built.directory / asset["href"]).resolve().as_uri()
    path = built.directory / "item-file-hrefs.json"
    path.write_text(json.dumps(document))
    return path


def _s3_item(built: Built, bucket: str) -> str:
    """The Item on S3 (``s3://bucket/<name>/item.json``) with its artifacts uploaded next to it (absolute hrefs)."""
    from obstore.store import S3Store

    document = json.loads((built.directory / "item.json").read_text())
    uploaded = upload_artifacts(document, built.directory, f"s3://{bucket}/{built.name}")
    obstore.put(S3Store(bucket), f"{built.name}/item.json", json.dumps(uploaded).encode())
    return f"s3://{bucket}/{built.name}/item.json"


def _api_item(built: Built, stac_api: Any, server: LoopbackServer, schema_dir: Path, hit: bool) -> Any:
    """The Item published to the local STAC API, hrefs under the loopback server: its URL or a pystac-client hit."""
    result = publish([built.directory / "item.json"], stac_api.url, COLLECTION, if_exists="replace",
                     href_base=f"{server.url}/{built.name}", schema_dir=schema_dir, progress=False)  # fmt: skip
    if not hit:
        return result.item_url(built.item_id)
    hits = list(pystac_client.Client.open(stac_api.url).search(collections=[COLLECTION], ids=[built.item_id]).items())
    assert [h.id for h in hits] == [built.item_id]
    return hits[0]


def _item_for(transport: str, built: Built, request: pytest.FixtureRequest) -> Any:
    if transport == "path":
        return built.directory / "item.json"
    if transport == "file_href":
        return _file_href_item(built)
    server = request.getfixturevalue("server")
    if transport == "http":
        return f"{server.url}/{built.name}/item.json"
    if transport == "s3":
        return _s3_item(built, request.getfixturevalue("bucket"))
    stac_api, schema_dir = request.getfixturevalue("stac_api"), request.getfixturevalue("schema_dir")
    return _api_item(built, stac_api, server, schema_dir, hit=transport == "api_hit")


def _output(model: Any, example: torch.Tensor) -> np.ndarray:
    if hasattr(model, "get_inputs"):  # an onnxruntime.InferenceSession
        return model.run(None, {model.get_inputs()[0].name: example.numpy()})[0]
    with torch.no_grad():
        return model(example).numpy()


def _check_checksums(built: Built, cache: Path, remote: bool) -> None:
    """Every file:checksum is the sha256 of the exported file; a remote load left exactly those in the cache."""
    checksums = set()
    for asset in built.assets.values():
        if asset.get("file:checksum"):
            assert asset["file:checksum"] == sha256_multihash(built.directory / asset["href"])
            checksums.add(asset["file:checksum"])
    if remote:
        entries = {p.name for p in cache.iterdir() if p.is_file()}
        assert entries <= checksums and entries
        for name in entries:
            assert sha256_multihash(cache / name) == name


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", FORMATS)
def test_load_and_check_every_format_over_every_transport(
    name: str, transport: str, formats: Callable[[str], Built], cache_dir: Path, request: pytest.FixtureRequest
) -> None:
    built = formats(name)
    item = _item_for(transport, built, request)
    model = load_model(item, **built.kwargs)
    np.testing.assert_allclose(_output(model, built.example), built.expected, rtol=1e-5, atol=1e-6)
    report = check_item(item, **built.kwargs)
    assert report.ok, str(report)
    assert [list(s) for s in report.input_shapes] == [[2, 6]]
    _check_checksums(built, cache_dir, remote=transport not in ("path", "file_href"))


@pytest.mark.parametrize("transport", ["http", "s3", "api_url"])
@pytest.mark.parametrize("name", FORMATS)
def test_get_then_load_offline(
    name: str,
    transport: str,
    formats: Callable[[str], Built],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    built = formats(name)
    url = _item_for(transport, built, request)
    out = tmp_path / "offline"
    assert main(["get", url, "-o", str(out)]) == 0
    document = json.loads((out / f"{built.item_id}.json").read_text())
    for key, asset in built.assets.items():  # every file of the set came along, verified, under its own name
        if asset.get("file:checksum"):
            local = out / document["assets"][key]["href"]
            assert local.name == re.sub(r"[^A-Za-z0-9._-]", "_", Path(asset["href"]).name)  # a portable name
            assert sha256_multihash(local) == asset["file:checksum"]
    offline_cache = tmp_path / "offline-cache"
    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(offline_cache))
    model = load_model(out / f"{built.item_id}.json", **built.kwargs)
    np.testing.assert_allclose(_output(model, built.example), built.expected, rtol=1e-5, atol=1e-6)
    assert check_item(out / f"{built.item_id}.json", **built.kwargs).ok
    assert not offline_cache.exists() or not any(offline_cache.iterdir())  # nothing was downloaded


def test_the_items_artifact_type_decides_and_the_content_must_agree(
    formats: Callable[[str], Built], tmp_path: Path
) -> None:
    from mlm_export.errors import ArtifactLoadError

    cases = [("pt2", "torch.jit.save", "recorded as mlm:artifact_type 'torch.jit.save'"),
             ("safetensors", "torch.save", "looks like a safetensors file"),
             ("state_dict", "safetensors.torch.save_file", "does not start with a safetensors")]  # fmt: skip
    for name, wrong, words in cases:
        built = formats(name)
        directory = tmp_path / name
        directory.mkdir()
        document = json.loads((built.directory / "item.json").read_text())
        asset = document["assets"]["model"]
        suffixless = directory / asset["file:checksum"]  # named like a cache entry: no suffix to go by
        suffixless.write_bytes((built.directory / asset["href"]).read_bytes())
        asset["href"] = f"./{suffixless.name}"
        (directory / "item.json").write_text(json.dumps(document))
        model = load_model(directory / "item.json", **built.kwargs)
        np.testing.assert_allclose(_output(model, built.example), built.expected, rtol=1e-5, atol=1e-6)
        asset["mlm:artifact_type"] = wrong
        (directory / "item.json").write_text(json.dumps(document))
        with pytest.raises(ArtifactLoadError, match=words):
            load_model(directory / "item.json", **built.kwargs)
