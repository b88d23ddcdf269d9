"""adapters/torch/artifacts.py: in-memory modules written as safetensors, torch.save, TorchScript, .pt2."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn
from torch_truth import (
    CASE_IDS,
    CASES,
    MLM_TYPES,
    Case,
    check_item,
    expected_io,
    models,  # noqa: F401 - fixtures: registered by importing them
    param_count,
)

from mlm_export import export_item


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_module_in_memory(
    case: Case, models: dict[str, nn.Module], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each model family: measured params, shapes, dtypes, dynamic dims, weights file and notes."""
    model = models[case.name]
    model.train()
    flags = {name: m.training for name, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, outputs = expected_io(model, case.make_inputs(1, 0), case.make_inputs(2, case.grow), case.dynamic)

    item = export_item(model, artifact_dir=tmp_path, **case.export_kwargs())

    artifact = tmp_path / f"{type(model).__name__}.safetensors"
    data = check_item(
        item,
        params=param_count(model),
        inputs=inputs,
        input_types=[MLM_TYPES[t.dtype] for t in case.make_inputs(1, 0)],
        outputs=outputs,
        artifact=artifact,
        names=case.names,
    )
    props = data["properties"]
    assert props["mlm:architecture"] == type(model).__name__  # an architecture name, not a Python path
    assert "mlm:accelerator" not in props  # weights run anywhere; the CPU dry-run does not make them CPU-only
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    assert props["mlm:memory_size"] == param_bytes + buffer_bytes
    asset = data["assets"]["model"]
    assert asset["mlm:artifact_type"] == "safetensors.torch.save_file"
    assert asset["type"] == "application/octet-stream; framework=pytorch; application=safetensors"
    assert asset["roles"] == ["mlm:model", "mlm:weights", "weights"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [artifact.name]  # no temp file left
    # the weights file round-trips into a fresh model of the same class
    fresh = case.factory(**case.kwargs)
    safetensors.torch.load_model(fresh, str(artifact))  # tied weights are stored once (save_model)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, before[key]), key
    # the dry-run left the model as it was: training flags and weights
    assert {name: m.training for name, m in model.named_modules()} == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    if case.note:
        assert "description" not in props  # notes are warnings, not the Item's description
        text = caplog.text + " ".join(i.get("description", "") for i in props["mlm:input"])
        assert case.note in text
