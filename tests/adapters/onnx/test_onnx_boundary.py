"""adapters/onnx/boundary.py: bad ONNX inputs (a corrupt-file corpus, damaged models) become typed errors."""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from google.protobuf.message import DecodeError
from onnx_models import (
    custom_op_model,
    invalid_model,
    linear_model,
    multi_io_model,
    save_with_external_data,
)
from onnx_truth import (
    _quiet_extent,  # noqa: F401 - autouse fixture: registered by importing it
    assert_valid,
    files_in,
    item_inputs,
    item_outputs,
)

from mlm_export.adapters import ExportOptions
from mlm_export.adapters import onnx as adapter
from mlm_export.api import export_item, inspect_model
from mlm_export.cli import main, run
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
    MLMExportError,
    SourceError,
    UnsupportedSourceError,
)


def test_missing_external_data(tmp_path: Path) -> None:
    path = save_with_external_data(linear_model(), tmp_path / "linear.onnx")
    (tmp_path / "linear.onnx.data").unlink()
    with pytest.raises(ArtifactNotFoundError) as info:
        export_item(path, validate=False, artifact_dir=tmp_path / "out", embed_metadata=True)
    assert str(tmp_path / "linear.onnx.data") in str(info.value)
    assert not (tmp_path / "out").exists()


def test_truncated_external_data(tmp_path: Path) -> None:
    path = save_with_external_data(linear_model(), tmp_path / "linear.onnx")
    data = tmp_path / "linear.onnx.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(ArtifactLoadError, match="truncated") as info:
        adapter.describe(path, ExportOptions())
    assert str(data) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"this is not an onnx model\n", bytes(range(256)) * 4, b""],
    ids=["text", "binary", "empty"],
)
def test_not_an_onnx_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ArtifactLoadError) as info:
        export_item(path, validate=False)
    assert str(path) in str(info.value)
    assert files_in(tmp_path) == ["model.onnx"]


def test_truncated_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "multi.onnx"
    data = multi_io_model().SerializeToString()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactLoadError) as info:
        adapter.describe(path, ExportOptions())
    assert str(path) in str(info.value)


def test_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError):
        adapter.describe(tmp_path / "absent.onnx", ExportOptions())


def test_checker_failure_carries_the_checker_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    onnx.save(invalid_model(), str(path))
    with pytest.raises(onnx.checker.ValidationError) as checker:
        onnx.checker.check_model(str(path))

    with pytest.raises(ArtifactLoadError) as info:
        export_item(path, validate=False)

    assert str(checker.value) in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, onnx.checker.ValidationError)


def test_invalid_in_memory_model_leaves_nothing(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with pytest.raises(ArtifactLoadError):
        adapter.describe(invalid_model(), ExportOptions.from_flat(artifact_dir=artifacts))
    assert not artifacts.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ArtifactLoadError):
        adapter.describe(invalid_model(), ExportOptions.from_flat(artifact_dir=existing))
    assert files_in(existing) == []


def test_unsupported_op_degrades_to_static_description(tmp_path: Path) -> None:
    path = tmp_path / "custom.onnx"
    model = custom_op_model()
    onnx.save(model, str(path))
    with pytest.raises(Exception) as ort_error:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert "Frobnicate" in str(ort_error.value)

    with pytest.warns(RuntimeWarning, match="dry-run failed"):
        item = export_item(path, validate=False)

    assert "description" not in item.properties  # the dry-run failure is a warning, not Item content
    assert item_inputs(item) == {"x": ([-1, 4], "float32")}
    assert item_outputs(item) == {"y": ([-1, 4], "float32")}
    assert item.properties["mlm:framework_version"] == onnx.__version__
    assert "mlm:accelerator" not in item.properties
    assert_valid(item)


def test_published_item_loads_and_checks(tmp_path: Path) -> None:
    loading = pytest.importorskip("mlm_export.loading")
    path = tmp_path / "multi.onnx"
    onnx.save(multi_io_model(), str(path))
    item = export_item(path, validate=False)

    session = loading.load_model(item)
    report = loading.check_item(item)

    assert isinstance(session, ort.InferenceSession)
    assert report.ok, report


# --- corrupt-file corpus: what onnx/protobuf/onnxruntime raise becomes a typed error naming the file ---------------


def _with_replaced_bytes(model: onnx.ModelProto, old: bytes, new: bytes, path: Path) -> Path:
    """``model`` saved with one run of bytes replaced (same length: the protobuf framing stays intact)."""
    data = model.SerializeToString()
    assert len(old) == len(new) and data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    return path


def _corpus_file(case: str, directory: Path) -> Path:
    """Build one corrupt ``.onnx`` file of the corpus in ``directory``."""
    path = directory / f"{case}.onnx"
    if case == "random":
        path.write_bytes(random.Random(case).randbytes(4096))
    elif case == "truncated-protobuf":
        data = multi_io_model().SerializeToString()
        path.write_bytes(data[: len(data) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    elif case in ("missing-external-data", "truncated-external-data"):
        save_with_external_data(linear_model(), path)
        data = directory / f"{path.name}.data"
        if case == "missing-external-data":
            data.unlink()
        else:
            data.write_bytes(data.read_bytes()[:10])
    elif case == "checker-failure":
        onnx.save(invalid_model(), str(path))
    elif case == "graph-name-not-utf8":
        _with_replaced_bytes(linear_model(name="graphnameXYZ"), b"graphnameXYZ", b"graphname\xffYZ", path)
    elif case == "metadata-not-utf8":
        model = linear_model()
        onnx.helper.set_model_props(model, {"trained_on": "dataset-XYZ"})
        _with_replaced_bytes(model, b"dataset-XYZ", b"dataset-\xfeYZ", path)
    return path


#: case -> (our error, text in its message, the library exception it translates or None: found by our checks)
ONNX_CORPUS: dict[str, tuple[type[Exception], str, type[BaseException] | None]] = {
    "random": (ArtifactLoadError, "as an ONNX model", DecodeError),
    "truncated-protobuf": (ArtifactLoadError, "as an ONNX model", DecodeError),
    "empty": (ArtifactLoadError, "holds no ONNX model", None),
    "directory": (UnsupportedSourceError, "is a directory", None),
    "missing-external-data": (ArtifactNotFoundError, "does not exist", None),
    "truncated-external-data": (ArtifactLoadError, "truncated", None),
    "checker-failure": (ArtifactLoadError, "fails the ONNX checker", onnx.checker.ValidationError),
    "graph-name-not-utf8": (ArtifactLoadError, "graph.name is not UTF-8", None),
    "metadata-not-utf8": (ArtifactLoadError, "metadata_props.value is not UTF-8", None),
}


@pytest.mark.parametrize("case", sorted(ONNX_CORPUS))
def test_corrupt_onnx_corpus(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """inspect_model and ``mlm-export inspect``: the typed error naming the file; the CLI exits 1 with a hint."""
    error, text, cause = ONNX_CORPUS[case]
    path = _corpus_file(case, tmp_path)
    with pytest.raises(MLMExportError) as info:
        inspect_model(path)
    assert type(info.value) is error
    assert text in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint
    if cause is not None:
        assert isinstance(info.value.__cause__, cause)
    assert main(["inspect", str(path)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert lines[0].startswith("error: ") and str(path) in lines[0] and text in lines[0]
    assert lines[-1].startswith("hint: ")  # the checker's own message may span lines in between


def test_mutated_onnx_files_load_or_fail_typed(tmp_path: Path) -> None:
    """Randomly damaged models: each is described or raises a SourceError naming it (never a bug, never a
    ConfigurationError: a name that is not UTF-8 once reached the hyperparameters as bytes)."""
    data = multi_io_model().SerializeToString()
    rng = random.Random(3)
    outcomes: set[str] = set()
    for index in range(120):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path = tmp_path / f"damaged-{index}.onnx"
        path.write_bytes(bytes(damaged))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inspect_model(path)
            outcomes.add("described")
        except SourceError as exc:
            assert str(path) in exc.message
            outcomes.add(type(exc.__cause__).__name__ if exc.__cause__ else "checked")
    assert {"DecodeError", "ValidationError", "checked"} <= outcomes, outcomes


def test_bug_in_our_code_is_not_a_corrupt_onnx_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception from mlm-export's own code propagates as itself (CLI exit 3), never as 'corrupt file'."""
    path = tmp_path / "linear.onnx"
    onnx.save(linear_model(), str(path))
    bug = KeyError("bug")

    def broken(*args: object) -> None:
        raise bug

    monkeypatch.setattr("mlm_export.adapters.onnx.graph._count_initializers", broken)
    with pytest.raises(KeyError) as info:
        inspect_model(path)
    assert info.value is bug
    monkeypatch.setattr(sys, "argv", ["mlm-export", "inspect", str(path)])
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 3
    stderr = capsys.readouterr().err
    assert "KeyError: 'bug'" in stderr
    assert "error: " not in stderr
