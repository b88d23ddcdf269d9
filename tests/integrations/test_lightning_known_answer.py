"""The Lightning callback passes known_answer through to export_item: its Items carry a rerunnable example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_lightning import TinyNet, run_fit, trainer

from mlm_export import check_item, validate_item
from mlm_export.integrations.lightning import MLMExportCallback

pytestmark = pytest.mark.usefixtures("cache_dir")


def test_callback_publishes_a_known_answer(tmp_path: Path) -> None:
    callback = MLMExportCallback(dirpath=tmp_path / "mlm", name="tiny-net", known_answer=True)
    run_fit(trainer(tmp_path, [callback], fast_dev_run=True), TinyNet())
    path = Path(callback.exported[0])
    asset = json.loads(path.read_text())["assets"]["known-answer"]
    assert asset["roles"] == ["example", "data"] and (path.parent / asset["href"]).is_file()
    assert validate_item(path).valid
    report = check_item(path, model_class=TinyNet)
    assert report.ok, str(report)
    assert report.max_difference is not None and report.max_difference <= 1e-5
