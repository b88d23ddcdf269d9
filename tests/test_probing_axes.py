"""Which axis is the batch, and which sizes are dynamic, come from what probing measured (issue 23, points 2, 4)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import export_item, inspect_model  # noqa: E402

COMMON = {"bbox": [0, 0, 1, 1], "datetime": "2020-01-01T00:00:00Z", "value_scaling": "none", "resize_type": "none"}


class LastStepGRU(torch.nn.Module):
    """A GRU classifier reading the last step: [B, T, 10] -> [B, 4] (batch_first) or [T, B, 10] -> [B, 4]."""

    def __init__(self, *, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.gru = torch.nn.GRU(10, 4, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gru(x)[0]
        return out[:, -1] if self.batch_first else out[-1]


class SequenceGRU(torch.nn.Module):
    """A time-major GRU returning every step: [T, B, 10] -> [T, B, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


def _traced(model: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(model.eval(), example)


def _io(described: object) -> tuple:
    (spec,) = described.inputs
    return spec.shape, spec.dim_order, [(o.shape, o.dim_order) for o in described.outputs]


def test_a_traced_batch_first_gru_has_its_batch_first() -> None:
    x = torch.randn(8, 2, 10)
    traced = _traced(LastStepGRU(batch_first=True), x)
    assert tuple(traced(x).shape) == (8, 4)  # dim 0 is the batch
    for options in ({"input_shape": [-1, 2, 10]}, {"example_input": x}, {}):
        shape, order, outputs = _io(inspect_model(traced, **options))
        assert order == ("batch", "time", "channel"), options
        assert shape == (-1, -1, 10)  # a GRU runs any number of steps
        assert outputs == [((-1, 4), ("batch", "class"))]
    # The eager module (batch_first readable) says the same.
    assert _io(inspect_model(LastStepGRU(batch_first=True), input_shape=[-1, 2, 10]))[1] == ("batch", "time", "channel")


def test_a_time_major_gru_keeps_time_first() -> None:
    x = torch.randn(6, 3, 10)
    for model in (LastStepGRU(batch_first=False), SequenceGRU()):
        traced = _traced(model, x)
        shape, order, outputs = _io(inspect_model(traced, input_shape=[-1, -1, 10]))
        assert order == ("time", "batch", "channel"), type(model).__name__
        assert shape == (-1, -1, 10)
    assert outputs == [((-1, -1, 4), ("time", "batch", "channel"))]


class SmallResNetLike(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(13, 8, 3, stride=2, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_concrete_input_shape_sizes_are_where_probing_starts(tmp_path: Path) -> None:
    model = SmallResNetLike()
    inferred = inspect_model(model)  # what `inspect` says with no shape given
    assert inferred.inputs[0].shape == (-1, 13, -1, -1)
    item = export_item(model, input_shape=[-1, 13, 64, 64], artifact_dir=tmp_path / "a", tasks=["classification"],
                       **COMMON)  # fmt: skip
    (written,) = item.properties["mlm:input"]
    assert written["input"]["shape"] == [-1, 13, -1, -1]
    described = inspect_model(model, input_shape=[1, 13, 64, 64])
    assert described.inputs[0].shape == (-1, 13, -1, -1)
    notes = described.notes
    assert any("height/width given as 64x64 in input_shape" in n and "probe_dynamic=False" in n for n in notes)
    assert any("batch given as 1 in input_shape" in n for n in described.notes)
    # A publisher who wants the size fixed says so: probe_dynamic=False keeps the sizes given (and -1 dynamic).
    fixed = inspect_model(model, input_shape=[-1, 13, 64, 64], probe_dynamic=False)
    assert fixed.inputs[0].shape == (-1, 13, 64, 64)
    assert not any("given as" in n for n in fixed.notes)
