"""The bad-input corpus: each case raises one specific MLMExportError subclass whose message names the file or
argument and what to do, and leaves no item or artifact behind."""

from __future__ import annotations

import ast
import json
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import onnx_models as om
import pytest
import torch
import torch_models as tm
from torch import nn

import mlm_export
from mlm_export import export_item, save_item, validate_item
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
    ConfigurationError,
    ItemValidationError,
    MLMExportError,
    OutputError,
    OutputExistsError,
    ProbeError,
    SchemaNotFoundError,
    UnsupportedSourceError,
    UntrustedPickleError,
)

CANARY = "MLM_EXPORT_CANARY_RAN"


def _canary(marker: str) -> nn.Module:
    Path(marker).write_text("the pickle ran code")
    return tm.TinyMLP()


class Canary:
    """Unpickling this calls _canary, which writes a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], nn.Module], tuple[str]]:
        return (_canary, (self.marker,))


class StringOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> str:
        return "not a tensor"


@dataclass
class Case:
    name: str
    build: Callable[[Path], dict[str, Any]]  # makes files in tmp_path, returns export_item kwargs (incl. "model")
    error: type[MLMExportError]
    words: Callable[[Path], list[str]]  # what the message must name


def _file(name: str, data: bytes) -> Callable[[Path], dict[str, Any]]:
    def build(tmp: Path) -> dict[str, Any]:
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return {"model": path}

    return build


def _truncated(kind: str) -> Callable[[Path], dict[str, Any]]:
    def build(tmp: Path) -> dict[str, Any]:
        source = tmp / "in"
        source.mkdir(exist_ok=True)
        model = tm.TinyMLP()
        if kind == "pt":
            path = source / "model.pt"
            torch.save(model.state_dict(), path)
        elif kind == "safetensors":
            from safetensors.torch import save_file

            path = source / "model.safetensors"
            save_file(model.state_dict(), str(path))
        else:
            path = source / "model.onnx"
            onnx.save(om.linear_model(), str(path))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return {"model": path, "model_class": tm.TinyMLP}

    return build


def _lying_safetensors(tmp: Path) -> dict[str, Any]:
    header = json.dumps({"weight": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    path = tmp / "in" / "lying.safetensors"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    return {"model": path, "model_class": tm.TinyMLP}


def _pickle_canary(tmp: Path) -> dict[str, Any]:
    path = tmp / "in" / "canary.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save({"model": Canary(str(tmp / CANARY))}, path)
    return {"model": path}


def _onnx_missing_external(tmp: Path) -> dict[str, Any]:
    (tmp / "in").mkdir(exist_ok=True)
    path = om.save_with_external_data(om.conv_model(), tmp / "in" / "model.onnx")
    for side in path.parent.glob("*.data"):
        side.unlink()
    return {"model": path}


def _onnx_checker(tmp: Path) -> dict[str, Any]:
    path = tmp / "in" / "invalid.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(om.invalid_model(), str(path))
    return {"model": path}


def _state_dict(model_class: type[nn.Module]) -> Callable[[Path], dict[str, Any]]:
    def build(tmp: Path) -> dict[str, Any]:
        path = tmp / "in" / "weights.pt"
        path.parent.mkdir(exist_ok=True)
        torch.save(tm.TinyConvNet().state_dict(), path)
        return {"model": path, "model_class": model_class}

    return build


def _module(module: Callable[[], nn.Module], **kwargs: Any) -> Callable[[Path], dict[str, Any]]:
    return lambda tmp: {"model": module(), **kwargs}


def _onnx_as_pt(tmp: Path) -> dict[str, Any]:
    path = tmp / "in" / "model.pt"
    path.parent.mkdir(exist_ok=True)
    onnx.save(om.linear_model(), str(path))
    return {"model": path}


def _directory(tmp: Path) -> dict[str, Any]:
    (tmp / "in" / "model.pt").mkdir(parents=True)
    return {"model": tmp / "in" / "model.pt"}


def _name(tmp: Path) -> list[str]:
    return []


def _file_named(name: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [name]


MLP = tm.TinyMLP
EXPORT_CASES = [
    Case("empty-file", _file("empty.pt", b""), ArtifactLoadError, _file_named("empty.pt")),
    Case("truncated-pt", _truncated("pt"), ArtifactLoadError, _file_named("model.pt")),
    Case("truncated-safetensors", _truncated("safetensors"), ArtifactLoadError, _file_named("model.safetensors")),
    Case("truncated-onnx", _truncated("onnx"), ArtifactLoadError, _file_named("model.onnx")),
    Case("directory", _directory, UnsupportedSourceError, _file_named("model.pt")),
    Case("missing-path", lambda tmp: {"model": tmp / "nope.pt"}, ArtifactNotFoundError, _file_named("nope.pt")),
    Case("unknown-suffix", _file("model.h5", b"\x89HDF\r\n"), UnsupportedSourceError, _file_named("model.h5")),
    Case("onnx-renamed-pt", _onnx_as_pt, ArtifactLoadError, _file_named("model.pt")),
    Case("jpeg-renamed-pt", _file("photo.pt", b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\0" * 64), ArtifactLoadError,
         lambda tmp: ["photo.pt", "JPEG"]),
    Case("pickle-canary", _pickle_canary, UntrustedPickleError, lambda tmp: ["canary.pt", "trust_pickle"]),
    Case("safetensors-lying-header", _lying_safetensors, ArtifactLoadError, _file_named("lying.safetensors")),
    Case("onnx-missing-external-data", _onnx_missing_external, ArtifactNotFoundError, _file_named(".data")),
    Case("onnx-checker", _onnx_checker, ArtifactLoadError, _file_named("invalid.onnx")),
    Case("forward-raises", _module(tm.RaisingNet), ProbeError, lambda tmp: ["shape", "forward"]),
    Case("string-output", _module(StringOutput, input_shape=[-1, 3]), ProbeError, lambda tmp: ["tensor"]),
    Case("input-shape-zero", _module(MLP, input_shape=[1, 0]), ConfigurationError, _file_named("input_shape")),
    Case("input-shape-negative", _module(MLP, input_shape=[-3, 6]), ConfigurationError, _file_named("input_shape")),
    Case("input-shape-huge", _module(MLP, input_shape=[100_000, 100_000]), ConfigurationError,
         _file_named("input_shape")),
    Case("model-class-mismatch", _state_dict(tm.TinyMLP), ArtifactLoadError, lambda tmp: ["weights.pt", "missing"]),
    Case("bare-state-dict", _state_dict(None), ConfigurationError, lambda tmp: ["weights.pt", "model_class"]),
    Case("bbox-latitude", _module(MLP, bbox=[0, 0, 10, 95]), ConfigurationError, lambda tmp: ["bbox", "latitudes"]),
    Case("bbox-west-east", _module(MLP, bbox=[10, 0, -10, 5]), ConfigurationError,
         lambda tmp: ["bbox", "antimeridian"]),
    Case("datetime-invalid", _module(MLP, datetime="last tuesday"), ConfigurationError, _file_named("datetime")),
    Case("end-before-start", _module(MLP, start_datetime="2021-01-01", end_datetime="2020-01-01"),
         ConfigurationError, _file_named("end_datetime")),
    Case("artifact-format", _module(MLP, artifact_format="pickle"), ConfigurationError, _file_named("artifact_format")),
    Case("unsupported-object", lambda tmp: {"model": object()}, UnsupportedSourceError, _file_named("object")),
    Case("tasks-unknown", _module(MLP, tasks=["guessing"]), ConfigurationError, _file_named("guessing")),
    Case("classes-count", _module(MLP, classes=["a", "b"], tasks=["classification"]), ConfigurationError,
         _file_named("classes")),
]  # fmt: skip


def _tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.parametrize("case", EXPORT_CASES, ids=[c.name for c in EXPORT_CASES])
def test_bad_export_input(case: Case, tmp_path: Path) -> None:
    kwargs = case.build(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = _tree(tmp_path)
    with pytest.raises(case.error) as info:
        export_item(artifact_dir=out, **kwargs)
    message = str(info.value)
    for word in case.words(tmp_path):
        assert word in message, f"{word!r} not in {message!r}"
    assert info.value.hint or "Hint" in message or "hint" in message.lower(), message
    assert _tree(tmp_path) == before, "export left files behind"
    assert not (tmp_path / CANARY).exists()


def test_corpus_size() -> None:
    assert len(EXPORT_CASES) + len(ITEM_CASES) + 3 >= 25


def test_trusted_pickle_runs_only_when_asked(tmp_path: Path) -> None:
    kwargs = _pickle_canary(tmp_path)
    with pytest.raises(UntrustedPickleError):
        export_item(artifact_dir=tmp_path, **kwargs)
    assert not (tmp_path / CANARY).exists()
    item = export_item(artifact_dir=tmp_path, trust_pickle=True, **kwargs)  # the canary returns a TinyMLP
    assert (tmp_path / CANARY).exists()
    assert item.properties["mlm:total_parameters"] == sum(p.numel() for p in tm.TinyMLP().parameters())


def test_nan_output_warns_but_exports(tmp_path: Path, schema_dir: Path) -> None:
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        item = export_item(tm.NaNNet(), artifact_dir=tmp_path)
    assert validate_item(item, schema_dir).valid


# -- items, outputs, schemas -----------------------------------------------------------------------------------


def _item_file(content: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        path = tmp / "item.json"
        path.write_text(content)
        return path

    return build


ITEM_CASES = [
    ("not-json", _item_file("{oops"), ItemValidationError, "is not JSON"),
    ("json-not-object", _item_file('"text"'), ItemValidationError, "not an object"),
    ("unknown-stac-version", _item_file('{"type": "Feature", "stac_version": "0.6.0"}'), SchemaNotFoundError,
     "v0.6.0"),
    ("nan-in-bbox", _item_file('{"type": "Feature", "stac_version": "1.1.0", "bbox": [NaN, 0, 1, 1]}'),
     ItemValidationError, "NaN"),
    ("duplicate-key", _item_file('{"type": "Feature", "id": "a", "id": "b"}'), ItemValidationError, "duplicate key"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "error", "words"), [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES])
def test_bad_item_to_validate(tmp_path: Path, schema_dir: Path, build: Callable, error: type, words: str) -> None:
    path = build(tmp_path)
    with pytest.raises(error, match=words) as info:
        validate_item(path, schema_dir)
    assert info.value.hint


def test_output_not_writable_and_existing(tmp_path: Path) -> None:
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "a")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="a parent is a file") as info:
        save_item(item, blocker / "item.json", allow_outside=[tmp_path])  # the weights lie in ../a
    assert "file" in str(info.value)
    with pytest.raises(OutputError, match="Cannot write"):
        save_item(item, Path("/proc/item.json"), allow_outside=[tmp_path])
    path = save_item(item, tmp_path / "item.json")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        save_item(item, path)
    assert path.read_bytes() == before
    with pytest.raises(OutputError):
        export_item(tm.TinyMLP(), artifact_dir=blocker)


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_existing_artifact_is_not_overwritten(fmt: str, tmp_path: Path, schema_dir: Path) -> None:
    example = {"input_shape": [-1, 6]}
    first = export_item(tm.TinyMLP(), artifact_dir=tmp_path, artifact_format=fmt, **example)
    path = save_item(first, tmp_path / "first.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputExistsError, match="already exists") as info:
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, artifact_format=fmt, **example)
    assert "overwrite=True" in str(info.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert validate_item(path, schema_dir).valid
    export_item(tm.TinyMLP(), artifact_dir=tmp_path, artifact_format=fmt, overwrite=True, **example)


def test_credentials_in_href_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="href_base .*credentials"):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, href_base="https://user:secret@example.com/models")
    assert not list(tmp_path.iterdir())
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path, href_base="https://example.com/models")
    item.assets["model"].href = "https://user:secret@example.com/models/TinyMLP.safetensors"
    with pytest.raises(ConfigurationError, match="credentials"):
        save_item(item, tmp_path / "item.json")
    assert not (tmp_path / "item.json").exists()


def test_links_hyperparameters_and_model_kwargs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="links= entry 'http://x'"):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, links=["http://x"])
    with pytest.raises(ConfigurationError, match="hyperparameters are not JSON"):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, hyperparameters={"lr": object()})
    with pytest.raises(ConfigurationError, match="model_kwargs"):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, model_kwargs=[1])
    assert not list(tmp_path.iterdir())
    link = {"rel": "derived_from", "href": "https://example.com/train.json", "ml-aoi:split": "train"}
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path, links=[link])
    assert any(lk.extra_fields.get("ml-aoi:split") == "train" for lk in item.links)


def test_interrupted_write_leaves_directory_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "a")
    out = tmp_path / "out"
    out.mkdir()
    (out / "item.json").write_text("old")

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_item(item, out / "item.json", overwrite=True, allow_outside=[tmp_path])
    assert _tree(out) == ["item.json"] and (out / "item.json").read_text() == "old"


def test_saved_items_hold_no_local_paths(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    item = export_item(tm.TinyMLP(), artifact_dir=artifacts)
    text = save_item(item, tmp_path / "item.json").read_text()
    assert str(tmp_path) not in text and "file://" not in text
    public = export_item(
        tm.TinyMLP(), artifact_dir=artifacts, href_base="https://models.example.com/v1", overwrite=True
    )
    text = save_item(public, tmp_path / "public.json").read_text()
    assert "https://models.example.com/v1/TinyMLP.safetensors" in text and str(tmp_path) not in text


# -- safety scan -----------------------------------------------------------------------------------------------


def test_no_unpickling_without_trust_pickle() -> None:
    """Every torch.load(weights_only=<not True>) sits after a trust_pickle check; nothing calls pickle.load."""
    package = Path(mlm_export.__file__).parent
    risky = []
    for path in package.rglob("*.py"):
        source = path.read_text()
        tree = ast.parse(source)
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for call in ast.walk(function):
                if not isinstance(call, ast.Call):
                    continue
                name = ast.unparse(call.func)
                assert name not in ("pickle.load", "pickle.loads", "pickle.Unpickler"), f"{path}: {name}"
                for keyword in call.keywords:
                    if keyword.arg == "weights_only" and not (
                        isinstance(keyword.value, ast.Constant) and keyword.value.value is True
                    ):
                        guard = [n for n in ast.walk(function) if isinstance(n, ast.If) and n.lineno < call.lineno
                                 and "trust_pickle" in ast.unparse(n.test)]  # fmt: skip
                        if not guard:
                            risky.append(f"{path.name}:{call.lineno}")
    assert not risky, f"unguarded unpickling at {risky}"
    assert pickle  # the test module itself only pickles (the canary), never unpickles
