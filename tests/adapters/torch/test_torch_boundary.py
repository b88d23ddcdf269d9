"""adapters/torch/boundary.py, runner.py: bad inputs, devices and import hygiene."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import torch_models as tm
from torch import nn
from torch_truth import CASES, REPO, check_item, param_count, save_as, sha256_multihash

from mlm_export import export_item, validate_item
from mlm_export.errors import (
    ArtifactLoadError,
    ConfigurationError,
    ProbeError,
    UntrustedPickleError,
)


def test_forward_that_raises(tmp_path: Path) -> None:
    """ProbeError names the shapes and the original exception; nothing is written; flags come back."""
    model = tm.RaisingNet().train()
    with pytest.raises(ProbeError) as info:
        export_item(model, artifact_dir=tmp_path / "art")
    message = str(info.value)
    assert "[1, 6]" in message
    assert "ValueError: boom" in message
    assert isinstance(info.value.__cause__, ValueError)
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").iterdir())
    assert all(m.training for m in model.modules())


def test_nan_outputs_warn_but_build(tmp_path: Path) -> None:
    """NaN outputs: a RuntimeWarning, and the item is still built and valid."""
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        item = export_item(tm.NaNNet(), artifact_dir=tmp_path)
    assert "NaN or inf" in item.properties["mlm:output"][0]["description"]
    assert validate_item(item).valid


def test_non_tensor_and_bfloat16_outputs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """None/str leaves are left out with a note; bfloat16 is data type 'other' with the real dtype written."""
    item = export_item(tm.MixedOutputNet(), artifact_dir=tmp_path / "a")
    outputs = item.properties["mlm:output"]
    assert [o["name"] for o in outputs] == ["output_0"]
    assert "'output_1'" in caplog.text
    assert "NoneType" in caplog.text

    item = export_item(tm.BFloat16OutputNet(), artifact_dir=tmp_path / "b")
    result = item.properties["mlm:output"][0]
    assert result["result"]["data_type"] == "other"
    assert "torch.bfloat16" in result["description"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("random.pt", os.urandom(4096), "not a PyTorch checkpoint"),
        ("photo.pt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(512), "JPEG"),
        ("empty.pth", b"", "empty"),
        ("random.safetensors", os.urandom(512), "safetensors"),
        ("random.pt2", os.urandom(512), "not a PyTorch checkpoint"),
    ],
)
def test_not_a_checkpoint(name: str, content: bytes, match: str, tmp_path: Path) -> None:
    """Files that are no PyTorch file at all: ArtifactLoadError naming the file."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ArtifactLoadError, match=match) as info:
        export_item(path, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    assert str(path) in str(info.value)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [(torch.randn(3), "holds a Tensor"), ({"epoch": 3, "notes": ["a"]}, "Cannot find a state_dict")],
)
def test_checkpoint_without_weights(content: Any, match: str, tmp_path: Path) -> None:
    """A torch.save file that holds no state_dict: ArtifactLoadError naming the file."""
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    with pytest.raises(ArtifactLoadError, match=match) as info:
        export_item(path, model_class=tm.TinyMLP)
    assert str(path) in str(info.value)


def test_legacy_serialization_and_conv1d_names(tmp_path: Path) -> None:
    """The pre-zip torch.save format loads safely; a Conv1d input is named batch, channel, time."""
    model = tm.TinyMLP()
    path = tmp_path / "legacy.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    item = export_item(path, model_class=tm.TinyMLP)
    assert item.properties["mlm:total_parameters"] == param_count(model)
    assert item.assets["model"].extra_fields["file:checksum"] == sha256_multihash(path)

    conv = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU())
    item = export_item(conv, input_shape=[-1, 4, -1], artifact_dir=tmp_path / "art")
    spec = item.properties["mlm:input"][0]["input"]
    assert spec["dim_order"] == ["batch", "channel", "time"]
    assert spec["shape"] == [-1, 4, -1]


@pytest.mark.parametrize("kind", ["state_dict", "safetensors", "torchscript", "pt2"])
def test_truncated_file(kind: str, tmp_path: Path) -> None:
    """Half a file: ArtifactLoadError naming it, no partial output."""
    case = next(c for c in CASES if c.name == "mlp")
    path = save_as(tm.TinyMLP(), case, kind, tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / f"truncated{path.suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactLoadError) as info:
        export_item(truncated, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    assert str(truncated) in str(info.value)
    assert not (tmp_path / "art").exists()


def test_pickled_module_refused_then_trusted(tmp_path: Path) -> None:
    """A pickled nn.Module is not unpickled without trust_pickle (the canary proves it), and is with it."""
    marker = tmp_path / "canary-ran.txt"
    path = tmp_path / "full_model.pt"
    torch.save(tm.CanaryModule(marker), path)
    tm.CANARY_RUNS.clear()

    with pytest.raises(UntrustedPickleError) as info:
        export_item(path, artifact_dir=tmp_path / "art")
    assert str(path) in info.value.message
    assert "trust_pickle=True" in info.value.hint
    assert "torch_models.rebuild_canary" in info.value.message
    assert not marker.exists()
    assert tm.CANARY_RUNS == []

    item = export_item(path, trust_pickle=True, artifact_dir=tmp_path / "art")
    assert marker.exists()
    assert [str(marker)] == tm.CANARY_RUNS
    check_item(
        item, params=param_count(tm.TinyMLP()), inputs=[[-1, 6]], input_types=["float32"],
        outputs={"output": ([-1, 3], "float32")}, artifact=path,
    )  # fmt: skip
    assert not (tmp_path / "art").exists()


def test_state_dict_not_fitting_model_class(tmp_path: Path) -> None:
    """Missing and unexpected keys and shape mismatches are listed."""
    path = tmp_path / "conv.pt"
    torch.save(tm.TinyConvNet(in_channels=4).state_dict(), path)
    with pytest.raises(ArtifactLoadError) as info:
        export_item(path, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    message = str(info.value)
    assert str(path) in message
    assert "missing keys" in message
    assert "body.0.weight" in message
    assert "unexpected keys" in message
    assert "features.0.weight" in message

    with pytest.raises(ArtifactLoadError, match=r"shape mismatches.*features\.0\.weight"):
        export_item(path, model_class="torch_models:TinyConvNet", model_kwargs={"in_channels": 3})
    assert not (tmp_path / "art").exists()


def test_missing_model_class_and_input_shape(tmp_path: Path) -> None:
    """A bare state_dict or safetensors file needs model_class; a model without hints needs input_shape."""
    model = tm.TinyMLP()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ConfigurationError, match="model_class"):
        export_item(path)
    st_path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(st_path))
    with pytest.raises(ConfigurationError, match="model_class") as info:
        export_item(st_path)
    assert f"{len(model.state_dict())} tensors" in str(info.value)
    with pytest.raises(ConfigurationError, match="input_shape"):
        export_item(tm.NoLayerNet(), artifact_dir=tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_bad_options(tmp_path: Path) -> None:
    """Unknown artifact format, bad device, bad shapes, bad model_class: ConfigurationError."""
    with pytest.raises(ConfigurationError, match="artifact_format"):
        export_item(tm.TinyMLP(), artifact_format="pickle", artifact_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="device"):
        export_item(tm.TinyMLP(), device="tpu:0", artifact_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="input_shape"):
        export_item(tm.TinyMLP(), input_shape=[1, "six"], artifact_dir=tmp_path)
    path = tmp_path / "w.pt"
    torch.save(tm.TinyMLP().state_dict(), path)
    with pytest.raises(ConfigurationError, match="model_class"):
        export_item(path, model_class="torch_models:NoSuchClass")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    """device='cuda' on a machine without CUDA: a clear ConfigurationError."""
    with pytest.raises(ConfigurationError, match="CUDA is not available") as info:
        export_item(tm.TinyMLP(), device="cuda", artifact_dir=tmp_path)
    assert "device='cpu'" in info.value.hint


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_dry_run(tmp_path: Path) -> None:
    """device='cuda': accelerator cuda, the GPU's name, peak memory, and the model back on its own device."""
    torch.manual_seed(0)
    model = tm.TinyConvNet().train()
    item = export_item(model, device="cuda", artifact_dir=tmp_path / "a")
    props = item.properties
    assert "mlm:accelerator" not in props  # safetensors weights are not bound to the GPU of the dry-run
    tensor_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert props["mlm:memory_size"] >= tensor_bytes
    assert all(t.device.type == "cpu" for t in model.parameters())
    assert all(m.training for m in model.modules())
    out = model.eval()(torch.randn(1, 4, 64, 64))
    assert props["mlm:output"][0]["result"]["shape"] == [-1, out.shape[1]]

    on_gpu = tm.TinyMLP().cuda()
    export_item(on_gpu, device="cpu", artifact_dir=tmp_path / "b")
    assert all(t.device.type == "cuda" for t in on_gpu.parameters())
    item = export_item(on_gpu, device="cuda:0", artifact_dir=tmp_path / "c")
    assert "mlm:accelerator" not in item.properties
    assert validate_item(item).valid


def test_import_does_not_import_torch() -> None:
    """Importing mlm_export and the adapter registry does not import torch; the torch adapter package does."""
    code = (
        "import sys, mlm_export, mlm_export.adapters as r\n"
        "assert r.ADAPTERS_BY_SUFFIX['.safetensors'] == 'mlm_export.adapters.torch'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import mlm_export.adapters.torch as t\n"
        "assert t.can_describe('model.safetensors') and not t.can_describe(object())\n"
        "assert 'torch' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_missing_torch_is_a_missing_dependency(tmp_path: Path) -> None:
    """Without torch, the registry reports the extra to install instead of an ImportError."""
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from mlm_export.adapters import adapter_for\n"
        "from mlm_export.errors import MissingDependencyError\n"
        "try:\n"
        f"    adapter_for({str(model)!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc.hint)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pip install 'mlm-export[torch]'"
