"""adapters/torch/sources.py: PyTorch files opened safely."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_truth import (  # noqa: F401 - fixtures: registered by importing them
    CASE_IDS,
    CASES,
    FILE_KINDS,
    MLM_TYPES,
    Case,
    case_files,
    check_item,
    expected_io,
    models,
    param_count,
)

from mlm_export import export_item


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_module_from_file(
    case: Case,
    kind: str,
    models: dict[str, nn.Module],
    case_files: Callable[[Case, str], Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each model family saved as each file kind and described from the file (not copied)."""
    model = models[case.name]
    path = case_files(case, kind)
    kwargs = case.export_kwargs()
    if kind in ("state_dict", "safetensors"):
        kwargs.update(model_class=case.factory, model_kwargs=case.kwargs)
    elif kind == "checkpoint":
        kwargs.update(model_class=case.factory)  # constructor arguments come from hyper_parameters
    if kind == "pt2":
        program = torch.export.load(str(path))
        dynamic = case.pt2_dynamic or case.dynamic
        grow = case.grow if dynamic == case.dynamic else 0
        base, alt = case.make_inputs(2, 0), case.make_inputs(3, grow)
        inputs, outputs = expected_io(program.module(), base, alt, dynamic)
        kwargs.pop("example_input", None)  # the .pt2 carries its own example inputs
    else:
        inputs, outputs = expected_io(model, case.make_inputs(1, 0), case.make_inputs(2, case.grow), case.dynamic)

    item = export_item(path, artifact_dir=tmp_path / "unused", **kwargs)

    data = check_item(
        item,
        params=param_count(model),
        inputs=inputs,
        input_types=[MLM_TYPES[t.dtype] for t in case.make_inputs(1, 0)],
        outputs=outputs,
        artifact=path,
        names=case.names,
    )
    asset = data["assets"]["model"]
    expected = {
        "state_dict": ("torch.save", ["mlm:model", "mlm:weights", "weights"]),
        "safetensors": ("safetensors.torch.save_file", ["mlm:model", "mlm:weights", "weights"]),
        "torchscript": ("torch.jit.save", ["mlm:model", "mlm:compiled"]),
        "pt2": ("torch.export.save", ["mlm:model", "mlm:compiled"]),
        "checkpoint": ("torch.save", ["mlm:model", "mlm:checkpoint", "checkpoint"]),
    }[kind]
    assert (asset["mlm:artifact_type"], asset["roles"]) == expected
    assert not (tmp_path / "unused").exists()  # a file source is published as is, nothing is written
    props = data["properties"]
    if kind == "checkpoint":
        assert props["mlm:hyperparameters"]["lr"] == 0.001
        for key, value in case.kwargs.items():
            assert props["mlm:hyperparameters"][key] == value
        assert "prefix 'model.' was stripped" in caplog.text  # a warning, not Item content
    if kind in ("torchscript", "pt2"):
        assert props["mlm:name"].startswith(type(model).__name__.lower() + "-")
