"""A known-answer test travels with the model: export publishes an example and its output; check reruns them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_models as om
import pytest
import torch
import torch_models as tm
from loopback import LoopbackServer
from onnx import numpy_helper
from safetensors import safe_open
from safetensors.numpy import save_file

from mlm_export import check_item, export_item, save_item, validate_item
from mlm_export.cli import main
from mlm_export.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    ItemValidationError,
    KnownAnswerMismatchError,
)
from mlm_export.hashing import hash_file
from mlm_export.known_answer import tolerance
from mlm_export.loading import load_model_with_item

pytestmark = [pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.usefixtures("cache_dir")]


class ArgmaxNet(torch.nn.Module):
    """A class map: [B, 3, H, W] -> int64 [B, H, W] (an integer output, compared exactly)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per pixel."""
        return self.conv(x).argmax(1)


def _tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), framework="numpy") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())


def _export_torch(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = tm.TinyConvNet()
    item = export_item(model, input_shape=[-1, 4, -1, -1], artifact_dir=tmp_path, model_class=tm.TinyConvNet,
                       known_answer=True)  # fmt: skip
    return save_item(item, tmp_path / "item.json")


def _retamper(item_path: Path, change: dict[str, np.ndarray]) -> Path:
    """Swap tensors of the known-answer file and re-hash it in the Item (the checksums match: a wrong answer)."""
    doc = json.loads(item_path.read_text())
    asset = doc["assets"]["known-answer"]
    path = item_path.parent / asset["href"]
    tensors, meta = _tensors(path)
    tensors.update(change)
    path.unlink()
    save_file(tensors, str(path), metadata=meta)
    digest = hash_file(path)
    asset["file:size"], asset["file:checksum"] = digest.size, digest.checksum
    item_path.write_text(json.dumps(doc))
    return path


def test_torch_export_publishes_the_known_answer_asset(tmp_path: Path, schema_dir: Path) -> None:
    item_path = _export_torch(tmp_path)
    doc = json.loads(item_path.read_text())
    asset = doc["assets"]["known-answer"]
    assert asset["roles"] == ["example", "data"]
    assert asset["type"] == "application/octet-stream"
    assert "mlm:artifact_type" not in asset
    path = tmp_path / asset["href"]
    assert path.name == "TinyConvNet.known-answer.safetensors"
    digest = hash_file(path)
    assert (asset["file:size"], asset["file:checksum"]) == (digest.size, digest.checksum)
    tensors, meta = _tensors(path)
    assert sorted(tensors) == ["input.input", "output.output"]
    example = tensors["input.input"]
    assert example.shape == (1, 4, 64, 64) and example.dtype == np.float32  # batch 1, the dry-run's base size
    assert example.min() >= 0 and example.max() < 1
    assert meta["device"] == "cpu"
    # The published output is the model's own: rebuilt independently from the published weights.
    rebuilt = tm.TinyConvNet()
    from safetensors.torch import load_file

    rebuilt.load_state_dict(load_file(tmp_path / "TinyConvNet.safetensors"))
    with torch.no_grad():
        expected = rebuilt.eval()(torch.from_numpy(example)).numpy()
    np.testing.assert_allclose(tensors["output.output"], expected, rtol=1e-6, atol=1e-7)
    assert validate_item(item_path, schema_dir).valid
    # Validation checks the known-answer file's checksum like every asset's.
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    assert not validate_item(item_path, schema_dir).valid


def test_check_item_reruns_the_known_answer(tmp_path: Path) -> None:
    item_path = _export_torch(tmp_path)
    report = check_item(item_path, trust_code=True)
    assert report.ok, str(report)
    assert report.known_answer is not None and report.known_answer.outputs[0].name == "output"
    assert report.max_difference is not None and report.max_difference <= 1e-5
    assert "known-answer output: max |difference|" in str(report)
    assert "rtol 0.0001, atol 1e-05" in str(report)


def test_altered_output_fails_check_with_a_clear_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item_path = _export_torch(tmp_path)
    tensors, _ = _tensors(tmp_path / "TinyConvNet.known-answer.safetensors")
    wrong = tensors["output.output"].copy()
    wrong[0, 2] += 0.5  # what another pre-processing or other weights would have produced
    _retamper(item_path, {"output.output": wrong})
    report = check_item(item_path, trust_code=True)
    assert not report.ok
    assert report.outputs[0].ok  # shapes and dtypes still match: only the known answer catches it
    assert report.max_difference == pytest.approx(0.5, rel=1e-5)
    assert "MISMATCH: 1 of 5 values differ by more than atol + rtol * |expected|" in str(report)
    assert main(["check", str(item_path), "--trust-code"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    with pytest.raises(KnownAnswerMismatchError, match="does not reproduce the Item's known answer"):
        load_model_with_item(item_path, trust_code=True, known_answer=True)


def test_onnx_model_file_known_answer(tmp_path: Path, schema_dir: Path) -> None:
    proto = om.linear_model()
    model_path = tmp_path / "linear.onnx"
    onnx.save_model(proto, str(model_path))
    item = export_item(model_path, known_answer=True, input_shape=[-1, 4])
    item_path = save_item(item, tmp_path / "item.json")
    path = tmp_path / "linear.known-answer.safetensors"  # beside the model file
    assert item.assets["known-answer"].href.endswith(path.name)
    tensors, _ = _tensors(path)
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    expected = tensors["input.x"].astype(np.float64) @ weights["W"] + weights["b"]
    assert tensors["input.x"].shape == (1, 4)
    np.testing.assert_allclose(tensors["output.y"], expected, rtol=1e-5)
    report = check_item(item_path)
    assert report.ok, str(report)
    assert report.max_difference == 0.0  # the same runtime on the same file
    assert validate_item(item_path, schema_dir).valid


def test_remote_item_fetches_and_verifies_the_known_answer(tmp_path: Path) -> None:
    item_path = _export_torch(tmp_path)
    doc = json.loads(item_path.read_text())
    doc["assets"]["known-answer"]["href"] = "./other.safetensors"
    (tmp_path / "other.safetensors").write_bytes(b"\0" * doc["assets"]["known-answer"]["file:size"])
    (tmp_path / "swapped.json").write_text(json.dumps(doc))
    with LoopbackServer(tmp_path) as server:
        # A swapped file that the Item's checksum does not cover is refused before it is read.
        with pytest.raises(ChecksumMismatchError):
            check_item(f"{server.url}/swapped.json", trust_code=True)
        report = check_item(f"{server.url}/item.json", trust_code=True)
        assert report.ok, str(report)
        assert server.hits["/TinyConvNet.known-answer.safetensors"] == 1
        assert report.max_difference is not None and report.max_difference <= 1e-5


def test_integer_output_compares_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    item = export_item(ArgmaxNet(), input_shape=[-1, 3, -1, -1], artifact_dir=tmp_path, artifact_format="torch.export",
                       known_answer=True, tasks=["semantic-segmentation"])  # fmt: skip
    item_path = save_item(item, tmp_path / "item.json")
    report = check_item(item_path)
    assert report.ok, str(report)
    (out,) = report.known_answer.outputs
    assert (out.dtype, out.exact, out.max_difference) == ("int64", True, 0.0)
    assert "int64, exact" in str(report)
    tensors, _ = _tensors(tmp_path / "ArgmaxNet.known-answer.safetensors")
    wrong = tensors["output.output"].copy()
    wrong[0, 0, 0] = (wrong[0, 0, 0] + 1) % 4  # one class differs: no tolerance hides it
    _retamper(item_path, {"output.output": wrong})
    report = check_item(item_path)
    assert not report.ok
    assert "1 of 4096 values differ (exact match required)" in str(report)


def test_missing_known_answer_with_verify_is_refused(tmp_path: Path) -> None:
    item = export_item(tm.TinyMLP(in_features=6, num_classes=3), input_shape=[-1, 6], artifact_dir=tmp_path,
                       artifact_format="torch.export")  # fmt: skip
    item_path = save_item(item, tmp_path / "item.json")
    assert check_item(item_path).known_answer is None
    with pytest.raises(ItemValidationError, match="publishes no 'known-answer' asset"):
        load_model_with_item(item_path, known_answer=True)


def test_cli_export_known_answer_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tm.TinyMLP(in_features=6, num_classes=3)
    program = torch.export.export(model.eval(), (torch.randn(2, 6),))
    torch.export.save(program, tmp_path / "mlp.pt2")
    out = tmp_path / "item.json"
    assert main(["export", str(tmp_path / "mlp.pt2"), "-o", str(out), "--input-shape", "2", "6", "--known-answer"]) == 0
    assert (tmp_path / "mlp.known-answer.safetensors").is_file()
    assert main(["check", str(out)]) == 0
    assert "known-answer output: max |difference| 0" in capsys.readouterr().out


def test_stated_tolerances() -> None:
    assert tolerance("float32", same_device=True) == (1e-4, 1e-5)
    assert tolerance("float32", same_device=False) == (1e-2, 1e-3)
    assert tolerance("float16", same_device=True) == (1e-2, 1e-3)
    assert tolerance("bfloat16", same_device=True) == (5e-2, 1e-2)
    assert tolerance("int64", same_device=False) is None
    assert tolerance("bool", same_device=True) is None


def test_example_over_the_cap_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    directory = tmp_path / "artifacts"
    with pytest.raises(ConfigurationError, match="over the 8388608-byte cap"):
        export_item(tm.NoLayerNet(), input_shape=[1, 1_200_000], artifact_dir=directory, artifact_format="torch.export",
                    known_answer=True)  # fmt: skip
    assert not directory.exists() or list(directory.iterdir()) == []  # no model file, no known answer, no staging


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_exported_on_cpu_checked_on_cuda_uses_the_cross_device_tolerance(tmp_path: Path) -> None:
    item_path = _export_torch(tmp_path)
    report = check_item(item_path, trust_code=True, device="cuda")
    assert report.ok, str(report)
    (out,) = report.known_answer.outputs
    assert (report.known_answer.exported_on, report.known_answer.run_on) == ("cpu", "cuda")
    assert (out.rtol, out.atol) == (1e-2, 1e-3)
