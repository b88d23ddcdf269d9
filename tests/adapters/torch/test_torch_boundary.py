"""adapters/torch/boundary.py, runner.py: bad inputs, a corrupt-file corpus, devices and import hygiene."""

from __future__ import annotations

import json
import pickle
import random
import re
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import torch_models as tm
from google.protobuf.message import DecodeError
from safetensors import SafetensorError
from torch import nn
from torch_truth import CASES, REPO, check_item, param_count, save_as, sha256_multihash

from mlm_export import export_item, inspect_model, validate_item
from mlm_export.adapters import ExportOptions
from mlm_export.adapters.torch.boundary import (
    EXPORT_LOAD_ERRORS,
    LOAD_STATE_DICT_ERRORS,
    SAFETENSORS_ERRORS,
    TORCH_LOAD_ERRORS,
    _loading,
)
from mlm_export.adapters.torch.sources import _load_path
from mlm_export.cli import main, run
from mlm_export.errors import (
    ArtifactLoadError,
    ConfigurationError,
    MLMExportError,
    ProbeError,
    UnsupportedSourceError,
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
        ("random.pt", random.Random(1).randbytes(4096), "not a PyTorch checkpoint"),
        ("photo.pt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + random.Random(2).randbytes(512), "JPEG"),
        ("empty.pth", b"", "empty"),
        ("random.safetensors", random.Random(3).randbytes(512), "safetensors"),
        ("random.pt2", random.Random(4).randbytes(512), "not a PyTorch checkpoint"),
        # a pickle PROTO byte first (1 random file in 256 starts so) is not yet a legacy torch.save file
        ("proto.pt", b"\x80\x02" + random.Random(5).randbytes(510), "pickle that torch.save did not write"),
        ("proto.pt2", b"\x80\x04" + random.Random(6).randbytes(510), "pickle that torch.save did not write"),
        ("plain_pickle.pth", pickle.dumps({"weights": [1.0, 2.0]}, protocol=4), "pickle that torch.save did not"),
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
    for protocol in (3, 4, 5):  # protocols 4 and 5 put a FRAME opcode before the magic number
        framed = tmp_path / f"legacy_protocol_{protocol}.pth"
        torch.save(model.state_dict(), framed, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
        if protocol > 3:  # torch's weights-only unpickler has no FRAME opcode: only the full unpickler reads it
            with pytest.raises(UntrustedPickleError, match=r"references only tensors.*Unsupported operand 149"):
                export_item(framed, model_class=tm.TinyMLP, artifact_dir=tmp_path / f"art{protocol}")
        item = export_item(
            framed, model_class=tm.TinyMLP, artifact_dir=tmp_path / f"art{protocol}", trust_pickle=protocol > 3
        )
        assert item.properties["mlm:total_parameters"] == param_count(model)

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


# --- corrupt-file corpus: every file the library refuses becomes a typed error naming it ---------------------------


def _rewrite_zip(source: Path, target: Path, *, drop: str = "", replace: tuple[str, bytes] | None = None) -> Path:
    """Copy a zip archive leaving out the entries whose name contains ``drop`` and replacing one entry's bytes."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            if drop and drop in info.filename:
                continue
            data = old.read(info.filename)
            if replace is not None and info.filename.endswith(replace[0]):
                data = replace[1]
            new.writestr(info, data)
    return target


def _safetensors_with_header(source: Path, target: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """``source`` with its JSON header edited (``edit`` changes it in place or returns the raw header bytes)."""
    raw = source.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    edited = edit(header)
    text = edited if isinstance(edited, bytes) else json.dumps(header).encode()
    target.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length :])
    return target


def _central_directory_patched(source: Path, target: Path, offset: int, value: int) -> Path:
    """``source`` with one 16-bit field (at ``offset`` in each central-directory record) OR-ed with ``value``."""
    data = bytearray(source.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        struct.pack_into("<H", data, at + offset, struct.unpack_from("<H", data, at + offset)[0] | value)
        at = data.find(b"PK\x01\x02", at + 4)
    target.write_bytes(bytes(data))
    return target


def _first_tensor(header: dict[str, Any]) -> dict[str, Any]:
    return header[next(k for k in header if k != "__metadata__")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Corrupt files built from real saves of TinyMLP (each corruption is done by hand, as a disk or a copy would)."""
    d = tmp_path_factory.mktemp("corpus")
    model = tm.TinyMLP().eval()
    files: dict[str, Path] = {}

    def put(case: str, name: str, data: bytes) -> None:
        files[case] = d / name
        files[case].write_bytes(data)

    torch.save(model.state_dict(), good := d / "good.pt")
    data = good.read_bytes()
    put("truncated-zip", "truncated.pt", data[: len(data) // 2])
    files["zip-without-data.pkl"] = _rewrite_zip(good, d / "no_data_pkl.pt", drop="data.pkl")
    files["zip-without-storage"] = _rewrite_zip(good, d / "no_storage.pt", drop="/data/0")
    pickled = zipfile.ZipFile(good).read(next(n for n in zipfile.ZipFile(good).namelist() if n.endswith("data.pkl")))
    garbled = pickled[:10] + b"\x00garbage" + pickled[18:]
    files["zip-garbled-data.pkl"] = _rewrite_zip(good, d / "garbled_pkl.pt", replace=("data.pkl", garbled))
    torch.save(model.state_dict(), legacy := d / "legacy.pth", _use_new_zipfile_serialization=False)
    put("legacy-truncated", "legacy_truncated.pth", legacy.read_bytes()[:300])
    for suffix in (".pt", ".pth", ".ckpt", ".safetensors", ".pt2", ".onnx"):
        put(f"random{suffix}", f"random{suffix}", random.Random(suffix).randbytes(4096))
    put("empty.pt", "empty.pt", b"")
    put("empty.safetensors", "empty.safetensors", b"")
    files["directory.pt"] = d / "directory.pt"
    files["directory.pt"].mkdir()

    safetensors.torch.save_file(model.state_dict(), str(st := d / "good.safetensors"))
    raw = st.read_bytes()
    put("safetensors-length-past-eof", "st_past_eof.safetensors", struct.pack("<Q", 10**9) + raw[8:])
    files["safetensors-bad-json"] = _safetensors_with_header(st, d / "st_json.safetensors", lambda h: b"{not json")
    files["safetensors-offsets-out-of-range"] = _safetensors_with_header(
        st, d / "st_offsets.safetensors", lambda h: _first_tensor(h).update(data_offsets=[0, 10**8])
    )
    files["safetensors-wrong-dtype"] = _safetensors_with_header(
        st, d / "st_dtype.safetensors", lambda h: _first_tensor(h).update(dtype="F99")
    )
    put("safetensors-truncated", "st_truncated.safetensors", raw[: len(raw) // 2])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(scripted := d / "scripted.pt"))
    files["torchscript-without-code"] = _rewrite_zip(scripted, d / "ts_no_code.pt", drop="/code/")
    files["torchscript-without-constants"] = _rewrite_zip(scripted, d / "ts_no_const.pt", drop="constants.pkl")
    torch.export.save(torch.export.export(model, (torch.randn(2, 6),)), str(program := d / "program.pt2"))
    files["pt2-without-weights-config"] = _rewrite_zip(program, d / "pt2_no_weights.pt2", drop="/data/weights/")
    files["pt2-bad-model-json"] = _rewrite_zip(program, d / "pt2_json.pt2", replace=("models/model.json", b'{"x": 1}'))
    files["pt2-without-model-json"] = _rewrite_zip(program, d / "pt2_no_model.pt2", drop="/models/")
    files["pt2-encrypted-flag"] = _central_directory_patched(program, d / "pt2_encrypted.pt2", 8, 1)
    files["pt2-unknown-compression"] = _central_directory_patched(program, d / "pt2_method.pt2", 10, 99)

    torch.save(tm.TinyConvNet(in_channels=4).state_dict(), files.setdefault("state-dict-other-model", d / "conv.pt"))
    state = model.state_dict()
    torch.save({k: v for k, v in state.items() if k != "head.bias"}, files.setdefault("missing-key", d / "mk.pt"))
    torch.save({**state, "extra.weight": torch.zeros(2)}, files.setdefault("unexpected-key", d / "uk.pt"))
    misfit = {**state, "head.weight": torch.zeros(3, 3)}
    torch.save(misfit, files.setdefault("shape-mismatch", d / "shape.pt"))
    safetensors.torch.save_file(misfit, str(files.setdefault("shape-mismatch.safetensors", d / "s.safetensors")))
    torch.save({"epoch": 3, "notes": ["no tensors"]}, files.setdefault("plain-dict", d / "plain.pt"))
    return files


#: corpus file -> (our error, text in its message, the library exception it translates or None: found by us first)
CORPUS: dict[str, tuple[type[Exception], str, type[BaseException] | tuple[type[BaseException], ...] | None]] = {
    "truncated-zip": (ArtifactLoadError, "truncated or corrupt", None),
    "zip-without-data.pkl": (ArtifactLoadError, "not a PyTorch file", None),
    "zip-without-storage": (ArtifactLoadError, "failed locating file data/0", RuntimeError),
    "zip-garbled-data.pkl": (ArtifactLoadError, "pickle data is corrupt", pickle.UnpicklingError),
    # a legacy pickle names its storages by memory address, so where 300 bytes end differs from run to run: the
    # unpickler runs out of data (EOFError) or reads a truncated opcode argument (IndexError)
    "legacy-truncated": (ArtifactLoadError, "as a PyTorch checkpoint", (IndexError, EOFError)),
    "random.pt": (ArtifactLoadError, "not a PyTorch checkpoint", None),
    "random.pth": (ArtifactLoadError, "not a PyTorch checkpoint", None),
    "random.ckpt": (ArtifactLoadError, "not a PyTorch checkpoint", None),
    "random.pt2": (ArtifactLoadError, "not a PyTorch checkpoint", None),
    "random.safetensors": (ArtifactLoadError, "header too large", SafetensorError),
    "random.onnx": (ArtifactLoadError, "as an ONNX model", DecodeError),
    "empty.pt": (ArtifactLoadError, "the file is empty", None),
    "empty.safetensors": (ArtifactLoadError, "header too small", SafetensorError),
    "directory.pt": (UnsupportedSourceError, "is a directory", None),
    "safetensors-length-past-eof": (ArtifactLoadError, "header too large", SafetensorError),
    "safetensors-bad-json": (ArtifactLoadError, "invalid JSON in header", SafetensorError),
    "safetensors-offsets-out-of-range": (ArtifactLoadError, "invalid shape, data type, or offset", SafetensorError),
    "safetensors-wrong-dtype": (ArtifactLoadError, "F99", SafetensorError),
    "safetensors-truncated": (ArtifactLoadError, "incomplete metadata", SafetensorError),
    "torchscript-without-code": (ArtifactLoadError, "as a TorchScript archive", RuntimeError),
    "torchscript-without-constants": (ArtifactLoadError, "failed locating file constants.pkl", RuntimeError),
    "pt2-without-weights-config": (ArtifactLoadError, "model_weights_config.json", AssertionError),
    "pt2-bad-model-json": (ArtifactLoadError, "as an ExportedProgram", TypeError),
    "pt2-without-model-json": (ArtifactLoadError, "as an ExportedProgram", RuntimeError),
    "pt2-encrypted-flag": (ArtifactLoadError, "password required", RuntimeError),
    "pt2-unknown-compression": (ArtifactLoadError, "compression method is not supported", NotImplementedError),
    "state-dict-other-model": (ArtifactLoadError, "missing keys", None),
    "missing-key": (ArtifactLoadError, "missing keys (1): head.bias", None),
    "unexpected-key": (ArtifactLoadError, "unexpected keys (1): extra.weight", None),
    "shape-mismatch": (ArtifactLoadError, "shape mismatches", None),
    "shape-mismatch.safetensors": (ArtifactLoadError, "shape mismatches", None),
    "plain-dict": (ArtifactLoadError, "Cannot find a state_dict", None),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corrupt_file_corpus(case: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    """inspect_model and export_item: the typed error, naming the file, translating the library's own exception."""
    error, text, cause = CORPUS[case]
    path = corpus[case]
    with pytest.raises(MLMExportError) as info:
        inspect_model(path, model_class=tm.TinyMLP)
    assert type(info.value) is error
    assert text in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint
    if cause is None:
        assert not isinstance(info.value.__cause__, (RuntimeError, KeyError, TypeError, AttributeError))
    else:
        assert isinstance(info.value.__cause__, cause)
    with pytest.raises(error, match=re.escape(text)):
        export_item(path, model_class=tm.TinyMLP, artifact_dir=tmp_path / "art")
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corrupt_file_corpus_cli(case: str, corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``mlm-export inspect``: exit 1, one error line naming the file, one hint line."""
    path = corpus[case]
    code = main(["inspect", str(path), "--model-class", "torch_models:TinyMLP", "--no-probe"])
    stderr = capsys.readouterr().err
    assert code == 1
    lines = [line for line in stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 2, stderr
    assert lines[0].startswith("error: ")
    assert str(path) in lines[0]
    assert CORPUS[case][1] in lines[0]
    assert lines[1].startswith("hint: ")


@pytest.mark.parametrize(
    ("case", "target", "bug"),
    [
        ("shape-mismatch", "mlm_export.adapters.torch.sources._from_checkpoint", KeyError("bug")),
        ("shape-mismatch", "mlm_export.adapters.torch.rebuild._matching_prefix", TypeError("bug")),
        ("shape-mismatch.safetensors", "mlm_export.adapters.torch.rebuild._tied_keys", AttributeError("bug")),
        ("torchscript-without-code", "mlm_export.adapters.torch.sources._sniff", KeyError("bug")),
        ("pt2-bad-model-json", "mlm_export.adapters.torch.sources._from_program", IndexError("bug")),
    ],
    ids=["checkpoint", "rebuild", "safetensors", "sniff", "pt2"],
)
def test_bug_in_our_code_is_not_a_corrupt_file(
    case: str, target: str, bug: Exception, corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """An exception from mlm-export's own code propagates as itself (CLI exit 3), never as 'corrupt file'."""
    good = corpus[case].parent / ("good.safetensors" if case.endswith(".safetensors") else "good.pt")
    if case.startswith("pt2"):
        good = corpus[case].parent / "program.pt2"
    if case.startswith("torchscript"):
        good = corpus[case].parent / "scripted.pt"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise bug

    monkeypatch.setattr(target, broken)
    with pytest.raises(type(bug)) as info:
        inspect_model(good, model_class=tm.TinyMLP)
    assert info.value is bug
    monkeypatch.setattr(sys, "argv", ["mlm-export", "inspect", str(good), "--model-class", "torch_models:TinyMLP"])
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 3
    stderr = capsys.readouterr().err
    assert "Traceback" in stderr
    assert f"{type(bug).__name__}: {bug}" in stderr
    assert "error: Cannot read" not in stderr


@pytest.mark.parametrize("errors", [SAFETENSORS_ERRORS, TORCH_LOAD_ERRORS, EXPORT_LOAD_ERRORS, LOAD_STATE_DICT_ERRORS])
def test_loading_translates_only_the_listed_errors(errors: tuple[type[BaseException], ...], tmp_path: Path) -> None:
    """The boundary turns what the library call is known to raise into ArtifactLoadError and nothing else."""
    path = tmp_path / "model.pt"
    listed = errors[0]("listed")
    with pytest.raises(ArtifactLoadError) as info, _loading(path, "a test file", errors):
        raise listed
    assert info.value.__cause__ is listed
    assert str(path) in info.value.message
    for unlisted in (KeyError, TypeError, AttributeError, NameError, ZeroDivisionError):
        if issubclass(unlisted, errors):
            continue
        with pytest.raises(unlisted), _loading(path, "a test file", errors):
            raise unlisted("a bug in mlm-export")
    assert not issubclass(NameError, errors)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_mutated_checkpoints_load_or_fail_typed(legacy: bool, tmp_path: Path) -> None:
    """Randomly damaged torch.save files: each one loads or raises ArtifactLoadError naming it, nothing else.

    torch's restricted unpickler reports a damaged pickle as KeyError, IndexError, struct.error, AssertionError...
    (see TORCH_LOAD_ERRORS); all must become typed errors.
    """
    source = tmp_path / "good.pt"
    torch.save(tm.TinyMLP().state_dict(), source, _use_new_zipfile_serialization=not legacy)
    data = source.read_bytes()
    pickled_at = 0 if legacy else data.index(b"data.pkl") + 8  # damage the pickle, not the zip directory
    rng = random.Random(7)
    options = ExportOptions.from_flat(model_class=tm.TinyMLP)
    outcomes: set[str] = set()
    for index in range(150):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(pickled_at, pickled_at + 300)] = rng.randrange(256)
        path = tmp_path / f"damaged-{index}.pt"
        path.write_bytes(bytes(damaged))
        try:
            _load_path(path, options)
            outcomes.add("loaded")
        except ArtifactLoadError as exc:  # UntrustedPickleError included: a damaged opcode can name a global
            assert str(path) in exc.message
            outcomes.add(type(exc.__cause__).__name__ if exc.__cause__ else "checked")
    assert len(outcomes) >= 3, outcomes  # the damage really reaches different failure modes
