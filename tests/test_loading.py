"""Round trip: load_model verifies the file before loading; check_item compares declared and real outputs."""

from __future__ import annotations

import json
from pathlib import Path

import onnx_models as om
import pystac
import pytest
import torch
import torch_models as tm

from mlm_export import check_item, export_item, load_model, save_item
from mlm_export.cli import main
from mlm_export.errors import (
    ArtifactNotFoundError,
    ChecksumMismatchError,
    ConfigurationError,
    DryRunMemoryError,
    ItemValidationError,
    ProbeError,
    UnsupportedSourceError,
)


@pytest.fixture
def saved_item(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    item = export_item(tm.TinyMLP(in_features=6, num_classes=3), input_shape=[-1, 6], artifact_dir=tmp_path,
                       artifact_format="torch.export")  # fmt: skip
    return save_item(item, tmp_path / "item.json")


def test_load_model_returns_runnable_module(saved_item: Path) -> None:
    model = load_model(saved_item)
    out = model(torch.randn(4, 6))
    assert tuple(out.shape) == (4, 3)


def test_check_item_passes(saved_item: Path) -> None:
    report = check_item(saved_item)
    assert report.ok, str(report)
    assert report.input_shapes == ((2, 6),)
    assert [(o.actual_shape, o.actual_type) for o in report.outputs] == [((2, 3), "float32")]


def test_check_item_reports_declared_mismatch(saved_item: Path) -> None:
    doc = json.loads(saved_item.read_text())
    doc["properties"]["mlm:output"][0]["result"]["shape"] = [-1, 5]
    doc["properties"]["mlm:output"][0]["result"]["data_type"] = "float16"
    saved_item.write_text(json.dumps(doc))
    report = check_item(saved_item)
    assert not report.ok
    assert "shape [2, 3] does not fit [-1, 5]" in report.outputs[0].reason
    assert "data_type float32 is not float16" in report.outputs[0].reason
    assert main(["check", str(saved_item)]) == 1


def test_tampered_file_is_refused_before_loading(saved_item: Path) -> None:
    doc = json.loads(saved_item.read_text())
    weights = saved_item.parent / doc["assets"]["model"]["href"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="checksum") as info:
        load_model(saved_item)
    assert weights.name in str(info.value)
    weights.write_bytes(bytes(data[:-10]))
    with pytest.raises(ChecksumMismatchError, match="file:size"):
        check_item(saved_item)


def test_item_problems(saved_item: Path, tmp_path: Path) -> None:
    doc = json.loads(saved_item.read_text())
    remote = json.loads(json.dumps(doc))
    remote["assets"]["model"]["href"] = "ftp://example.com/model.pt2"  # http(s)/s3: tests/test_transfer.py
    with pytest.raises(ConfigurationError, match="neither a local path nor an http"):
        load_model(remote)
    relative = json.loads(json.dumps(doc))
    with pytest.raises(ConfigurationError, match="location is unknown"):
        load_model(relative)
    missing = tmp_path / "elsewhere"
    missing.mkdir()
    (missing / "item.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        load_model(missing / "item.json")
    odd = json.loads(json.dumps(doc))
    odd["assets"]["model"]["mlm:artifact_type"] = "tf.keras.Model.save"
    with pytest.raises(UnsupportedSourceError, match="tf.keras.Model.save"):
        load_model(_write(saved_item.parent, "odd.json", odd))
    norole = json.loads(json.dumps(doc))
    norole["assets"]["model"]["roles"] = ["weights"]
    with pytest.raises(ItemValidationError, match="mlm:model"):
        load_model(norole)
    with pytest.raises(ConfigurationError, match="asset_key='nope'"):
        load_model(saved_item, asset_key="nope")


def _write(directory: Path, name: str, doc: dict) -> Path:
    path = directory / name
    path.write_text(json.dumps(doc))
    return path


def test_cli_export_inspect_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = tm.TinyConvNet()
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "item.json"
    common = ["--model-class", "torch_models:TinyConvNet", "--input-shape=-1,4,32,32"]
    assert main(["inspect", str(weights), *common]) == 0
    table = capsys.readouterr().out
    assert "parameters" in table and str(sum(p.numel() for p in model.parameters())) in table
    assert not out.exists()
    assert main(["export", str(weights), *common, "-o", str(out), "--bbox", "5", "45", "10", "48",
                 "--tasks", "classification", "--no-progress"]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["assets"]["model"]["href"] == "./weights.pt"
    assert saved["bbox"] == [5.0, 45.0, 10.0, 48.0]
    assert main(["validate", str(out)]) == 0
    assert main(["check", str(out), "--model-class", "torch_models:TinyConvNet"]) == 0
    assert main(["export", str(weights), *common, "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_cli_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "weights.pt"
    torch.save(tm.TinyConvNet().state_dict(), weights)
    assert main(["export", str(weights), "-o", str(tmp_path / "i.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and "--model-class" in err[0] and err[1].startswith("hint: ")
    assert main(["inspect", str(weights_file := tmp_path / "missing.pt")]) == 1
    assert weights_file.name in capsys.readouterr().err
    for bad, message in (("{bad", "--model-kwargs: not JSON"), ("[1]", "must be a JSON object")):
        with pytest.raises(SystemExit) as info:  # a usage error: exit 2, before anything is loaded
            main(["inspect", str(weights), "--model-class", "torch_models:TinyConvNet", "--model-kwargs", bad])
        assert info.value.code == 2
        assert message in capsys.readouterr().err


def _widened(item: pystac.Item, width: int) -> pystac.Item:
    """The Item with its input's width changed: check_item reruns the model at the Item's shapes."""
    widened = item.clone()
    widened.properties["mlm:input"][0]["input"]["shape"][-1] = width
    return widened


def test_check_item_reports_out_of_memory_as_such_for_torch(tmp_path: Path) -> None:
    """A rerun that fails to allocate is DryRunMemoryError (a ProbeError) naming the inputs, not "forward failed"."""
    # probe_dynamic=False: the sizes given are the Item's (a probe at a larger width would run out of memory)
    item = export_item(tm.WidthHungryNet(), input_shape=[1, 3, 8, 64], probe_dynamic=False, artifact_dir=tmp_path)
    assert check_item(item, model_class=tm.WidthHungryNet).ok  # at the exported width it runs
    with pytest.raises(DryRunMemoryError, match=r"ran out of memory on inputs .*\[1, 3, 8, 96\] on cpu") as info:
        check_item(_widened(item, 96), model_class=tm.WidthHungryNet)
    assert isinstance(info.value, ProbeError) and "can't allocate memory" in str(info.value.__cause__)


def test_check_item_reports_out_of_memory_as_such_for_onnx(tmp_path: Path) -> None:
    """onnxruntime's arena failure in check_item's rerun: DryRunMemoryError, onnxruntime's error kept as the cause."""
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "allocating.onnx"
    onnx.save(om.allocating_model(base_width=64), str(path))
    item = export_item(path, input_shape=[1, 3, 8, 64], probe_dynamic=False)  # the sizes given are the Item's
    assert check_item(item).ok
    with pytest.raises(DryRunMemoryError, match=r"ran out of memory on inputs image\[1, 3, 8, 96\]") as info:
        check_item(_widened(item, 96))
    assert "Failed to allocate memory" in str(info.value.__cause__)
