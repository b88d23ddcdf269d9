"""predict(verify=True) / predict --verify rerun the Item's known answer before reading any data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file
from scenes import Seg, export_seg, scene  # noqa: F401 - scene is a fixture

from mlm_export import predict
from mlm_export.cli import main
from mlm_export.errors import ItemValidationError, KnownAnswerMismatchError
from mlm_export.hashing import hash_file

pytestmark = pytest.mark.usefixtures("cache_dir")


def _swap_output(item: Path) -> None:
    """Shift the published output and re-hash it (the checksums match: the answer itself is wrong)."""
    doc = json.loads(item.read_text())
    asset = doc["assets"]["known-answer"]
    path = item.parent / asset["href"]
    with safe_open(str(path), framework="numpy") as handle:
        tensors, meta = {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())
    tensors["output.output"] = tensors["output.output"] + np.float32(0.01)
    path.unlink()
    save_file(tensors, str(path), metadata=meta)
    digest = hash_file(path)
    asset["file:size"], asset["file:checksum"] = digest.size, digest.checksum
    item.write_text(json.dumps(doc))


def test_verify_runs_then_refuses_a_wrong_answer(
    tmp_path: Path, scene: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    item = export_seg(tmp_path / "model", known_answer=True)
    out = tmp_path / "out" / "map.tif"
    out.parent.mkdir()
    result = predict(item, scene["files"], out, model_class=Seg, tile_size=64, overlap=4, verify=True)
    assert result.output.is_file()
    _swap_output(item)
    again = tmp_path / "again"
    again.mkdir()
    with pytest.raises(KnownAnswerMismatchError, match="known-answer output: max \\|difference\\| 0.01"):
        predict(item, scene["files"], again / "map.tif", model_class=Seg, tile_size=64, verify=True)
    assert list(again.iterdir()) == []  # refused before anything was written
    assert main(["predict", str(item), *map(str, scene["files"]), "-o", str(again / "map.tif"), "--model-class",
                 "scenes:Seg", "--verify", "--no-progress"]) == 1  # fmt: skip
    assert "does not reproduce the Item's known answer" in capsys.readouterr().err
    assert list(again.iterdir()) == []


def test_verify_needs_a_published_known_answer(tmp_path: Path, scene: dict) -> None:
    item = export_seg(tmp_path / "model")
    with pytest.raises(ItemValidationError, match="publishes no 'known-answer' asset"):
        predict(item, scene["files"], tmp_path / "map.tif", model_class=Seg, verify=True)
    assert not (tmp_path / "map.tif").exists()
