"""Sharded Hugging Face checkpoints (safetensors and .bin): one source, every shard hashed and verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402
from torch_models import TinyConvNet  # noqa: E402

from mlm_export import export_item, load_model, save_item, validate_item  # noqa: E402
from mlm_export.adapters.torch.sharded import read_sharded  # noqa: E402
from mlm_export.errors import ArtifactLoadError, ArtifactNotFoundError, ChecksumMismatchError  # noqa: E402


def write_sharded(directory: Path, state: dict, shards: int, *, fmt: str = "safetensors") -> Path:
    """Split ``state`` over ``shards`` files the way ``save_pretrained`` names them, plus the index."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = list(state)
    extension, prefix = ("safetensors", "model") if fmt == "safetensors" else ("bin", "pytorch_model")
    weight_map = {}
    for number in range(shards):
        name = f"{prefix}-{number + 1:05d}-of-{shards:05d}.{extension}"
        part = {k: state[k].contiguous() for k in keys[number::shards]}
        if fmt == "safetensors":
            save_file(part, str(directory / name))
        else:
            torch.save(part, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = directory / f"{prefix}.{extension}.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return index


def sha256_multihash(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model() -> TinyConvNet:
    torch.manual_seed(0)
    return TinyConvNet(in_channels=4, num_classes=5).eval()


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_checkpoint_is_one_source_with_every_shard_an_asset(
    tmp_path: Path, model: TinyConvNet, fmt: str
) -> None:
    index = write_sharded(tmp_path / "ckpt", model.state_dict(), 3, fmt=fmt)
    item = export_item(
        index, model_class=TinyConvNet, model_kwargs={"in_channels": 4, "num_classes": 5},
        input_shape=[-1, 4, 16, 16], tasks=["classification"],
    )  # fmt: skip
    path = save_item(item, tmp_path / "ckpt" / "item.json")
    assert validate_item(path).valid
    assets = json.loads(path.read_text())["assets"]
    shards = sorted((tmp_path / "ckpt").glob(f"*-of-00003.{'safetensors' if fmt == 'safetensors' else 'bin'}"))
    model_assets = {k: a for k, a in assets.items() if "mlm:model" in a["roles"]}
    assert sorted(Path(a["href"]).name for a in model_assets.values()) == [s.name for s in shards]
    expected_type = "safetensors.torch.save_file" if fmt == "safetensors" else "torch.save"
    for asset in model_assets.values():
        assert "mlm:weights" in asset["roles"] and asset["mlm:artifact_type"] == expected_type
        shard = tmp_path / "ckpt" / asset["href"]
        assert asset["file:checksum"] == sha256_multihash(shard) and asset["file:size"] == shard.stat().st_size
    index_asset = assets["weights-index"]
    assert index_asset["type"] == "application/json" and index_asset["file:checksum"] == sha256_multihash(index)
    assert item.properties["mlm:total_parameters"] == sum(p.numel() for p in model.parameters())
    loaded = load_model(path, model_class=TinyConvNet, model_kwargs={"in_channels": 4, "num_classes": 5})
    x = torch.rand(2, 4, 16, 16)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_header_count_matches_the_tensors(tmp_path: Path, model: TinyConvNet) -> None:
    state = model.state_dict()
    checkpoint = read_sharded(write_sharded(tmp_path, state, 4))
    assert checkpoint.total_parameters == sum(t.numel() for t in state.values())
    assert {k: v[0] for k, v in checkpoint.header.items()} == {k: tuple(t.shape) for k, t in state.items()}


def test_load_model_verifies_every_shard(tmp_path: Path, model: TinyConvNet) -> None:
    index = write_sharded(tmp_path / "ckpt", model.state_dict(), 3)
    item = export_item(index, model_class=TinyConvNet, model_kwargs={"in_channels": 4, "num_classes": 5},
                       input_shape=[-1, 4, 16, 16], tasks=["classification"])  # fmt: skip
    path = save_item(item, tmp_path / "ckpt" / "item.json")
    last = tmp_path / "ckpt" / "model-00003-of-00003.safetensors"
    data = bytearray(last.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes, in the last shard (not the one model_artifact picks)
    last.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="model-00003-of-00003"):
        load_model(path, model_class=TinyConvNet, model_kwargs={"in_channels": 4, "num_classes": 5})


def test_missing_shard(tmp_path: Path, model: TinyConvNet) -> None:
    index = write_sharded(tmp_path, model.state_dict(), 3)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ArtifactNotFoundError, match="model-00002-of-00003.safetensors listed in the index"):
        read_sharded(index)


def test_shard_not_listed_in_the_index(tmp_path: Path, model: TinyConvNet) -> None:
    index = write_sharded(tmp_path, model.state_dict(), 3)
    document = json.loads(index.read_text())
    document["weight_map"] = {k: v for k, v in document["weight_map"].items() if not v.startswith("model-00003")}
    index.write_text(json.dumps(document))
    with pytest.raises(ArtifactLoadError, match="model-00003-of-00003.safetensors are in the folder but not in"):
        read_sharded(index)


def test_index_that_disagrees_with_the_headers(tmp_path: Path, model: TinyConvNet) -> None:
    index = write_sharded(tmp_path, model.state_dict(), 2)
    document = json.loads(index.read_text())
    moved = next(k for k, v in document["weight_map"].items() if v.startswith("model-00001"))
    document["weight_map"][moved] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(document))
    with pytest.raises(ArtifactLoadError, match="disagrees with the header") as excinfo:
        read_sharded(index)
    assert moved in str(excinfo.value)
    document["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    del document["weight_map"][moved]
    index.write_text(json.dumps(document))
    with pytest.raises(ArtifactLoadError, match="ghost.weight"):
        read_sharded(index)


@pytest.mark.parametrize(
    "content",
    ['{"weight_map": {"a": "../outside.safetensors"}}', '{"weight_map": {}}', "[1, 2]", "{not json"],
)
def test_malformed_index(tmp_path: Path, content: str) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(content)
    with pytest.raises(ArtifactLoadError):
        read_sharded(index)
