"""The CLI's validate path, exit codes, and import hygiene (no torch/onnx for import or validate)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES_DIR
from factories import item_dict

from mlm_export import __version__
from mlm_export.cli import main


def test_validate_examples_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(EXAMPLES_DIR.glob("item_*.json"))]
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert out.count("valid ") == len(files)


def test_validate_invalid_exit_one_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = item_dict(tmp_path)
    doc["properties"]["mlm:accelerator"] = "cpu"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(item_dict(tmp_path)))
    assert main(["validate", "--json", str(good), str(bad)]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert [r["valid"] for r in reports] == [True, False]
    assert reports[1]["problems"][0]["path"] == "/properties/mlm:accelerator"


def test_validate_error_is_one_line_with_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text("[1]")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and "x.json" in err[0]
    assert err[1].startswith("hint: ")


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_version_and_help() -> None:
    result = subprocess.run([sys.executable, "-m", "mlm_export", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"mlm-export {__version__}"
    result = subprocess.run([sys.executable, "-m", "mlm_export", "validate", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--json" in result.stdout


def test_import_and_validate_do_not_import_frameworks(tmp_path: Path) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_dict(tmp_path)))
    code = f"""
import sys
import mlm_export, mlm_export.stac.validate, mlm_export.api
from mlm_export.cli import main
assert main(["validate", {str(item)!r}]) == 0
heavy = ("torch", "onnx", "onnxruntime", "lightning", "torchgeo", "safetensors", "fastapi", "starlette", "uvicorn")
heavy = sorted(m for m in heavy if m in sys.modules)
print("HEAVY", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_catalog_and_search_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "catalog"
    assert main(["catalog", str(EXAMPLES_DIR / "item_basic.json"), "-o", str(catalog)]) == 0
    assert (catalog / "collection.json").is_file()
    assert main(["validate", str(catalog / "collection.json")]) == 0
    capsys.readouterr()
    assert main(["search", str(catalog), "--task", "classification", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in hits] == ["example-model"]
    assert main(["search", str(catalog), "--task", "super-resolution"]) == 0
    assert "No model matches" in capsys.readouterr().out
