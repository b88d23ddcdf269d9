"""bands= and value_scaling= by input name for multi-input models, in the API and the CLI (issue 12, point 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch_models as tm
from safetensors.torch import save_file

from mlm_export import export_item
from mlm_export.cli import main
from mlm_export.errors import ConfigurationError

EXTENT = {"bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}
OPTICAL = ["B02", "B03", "B04", "B08"]
SAR = ["VV", "VH"]
SCALING = {"optical": [{"type": "scale", "value": 0.0001}], "sar": [{"type": "offset", "value": 30.0}] * 2}
EXAMPLE = (torch.rand(1, 4, 32, 32), torch.rand(1, 2, 32, 32))


def _by_name(item: object) -> dict[str, dict]:
    return {i["name"]: i for i in item.properties["mlm:input"]}  # type: ignore[attr-defined]


def test_bands_and_scaling_by_input_name(tmp_path: Path) -> None:
    item = export_item(
        tm.OpticalSarNet(), example_input=EXAMPLE, artifact_dir=tmp_path, bands={"optical": OPTICAL, "sar": SAR},
        value_scaling=SCALING, **EXTENT,
    )  # fmt: skip
    inputs = _by_name(item)
    assert inputs["optical"]["bands"] == OPTICAL and inputs["sar"]["bands"] == SAR
    assert inputs["optical"]["input"]["dim_order"][1] == "bands" and inputs["sar"]["input"]["dim_order"][1] == "bands"
    assert inputs["optical"]["value_scaling"] == SCALING["optical"]
    assert inputs["sar"]["value_scaling"] == SCALING["sar"]
    assert [b["name"] for b in item.properties["bands"]] == OPTICAL + SAR


def test_mapping_errors_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'radar'"):
        export_item(tm.OpticalSarNet(), example_input=EXAMPLE, artifact_dir=tmp_path, bands={"radar": SAR}, **EXTENT)
    with pytest.raises(ConfigurationError, match="3 bands but input 'sar' has 2 channels"):
        export_item(
            tm.OpticalSarNet(), example_input=EXAMPLE, artifact_dir=tmp_path / "b", bands={"sar": ["VV", "VH", "X"]},
            **EXTENT,
        )  # fmt: skip


def test_cli_bands_and_scaling_by_input_name(tmp_path: Path) -> None:
    weights = tmp_path / "net.safetensors"
    save_file(tm.OpticalSarNet().state_dict(), str(weights))
    out = tmp_path / "item.json"
    code = main([
        "export", str(weights), "--model-class", "torch_models:OpticalSarNet",
        "--input-shape=-1,4,-1,-1", "--input-shape=-1,2,-1,-1",
        "--bands", "optical=" + ",".join(OPTICAL), "sar=" + ",".join(SAR), "--value-scaling", json.dumps(SCALING),
        "--bbox", "0", "0", "1", "1", "--datetime", "2024-01-01T00:00:00Z", "-o", str(out),
    ])  # fmt: skip
    assert code == 0
    inputs = {i["name"]: i for i in json.loads(out.read_text())["properties"]["mlm:input"]}
    assert inputs["optical"]["bands"] == OPTICAL and inputs["sar"]["value_scaling"] == SCALING["sar"]
