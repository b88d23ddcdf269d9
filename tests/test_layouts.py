"""Axis names follow the model's first layer: Conv1d, Conv3d and time-major RNN outputs keep their input's order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mlm_export import export_item, validate_item


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TimeMajorGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 7)  # batch_first=False: [time, batch, features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class VideoSegmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


CASES = [
    (Conv1dNet, (2, 4, 20), (3, 4, 52), ["batch", "channel", "time"], ["batch", "channel", "time"], "regression"),
    (TimeMajorGRU, (8, 2, 5), (40, 3, 5), ["time", "batch", "channel"], ["time", "batch", "channel"], "regression"),
    (VideoSegmenter, (2, 3, 8, 32, 32), (3, 3, 40, 64, 64), ["batch", "channel", "time", "height", "width"],
     ["batch", "class", "time", "height", "width"], "semantic-segmentation"),
]  # fmt: skip


@pytest.mark.parametrize(("factory", "small", "large", "in_order", "out_order", "task"), CASES,
                         ids=[c[0].__name__ for c in CASES])  # fmt: skip
def test_axis_names_follow_the_first_layer(
    factory: type[nn.Module], small: tuple, large: tuple, in_order: list, out_order: list, task: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = factory().eval()
    with torch.no_grad():
        a, b = model(torch.randn(small)), model(torch.randn(large))
    expected_out = [-1 if x != y else x for x, y in zip(a.shape, b.shape, strict=True)]
    expected_in = [-1 if x != y else x for x, y in zip(small, large, strict=True)]
    item = export_item(model, artifact_dir=tmp_path, bbox=[0, 0, 1, 1])
    spec_in, spec_out = item.properties["mlm:input"][0]["input"], item.properties["mlm:output"][0]["result"]
    assert (spec_in["shape"], spec_in["dim_order"]) == (expected_in, in_order)
    assert (spec_out["shape"], spec_out["dim_order"]) == (expected_out, out_order)
    assert item.properties["mlm:tasks"] == [task]
    assert validate_item(item).valid


def test_input_dtype_applies_to_an_inferred_input(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).double()
    item = export_item(model, input_dtype="float64", artifact_dir=tmp_path / "a", bbox=[0, 0, 1, 1])
    assert item.properties["mlm:input"][0]["input"]["data_type"] == "float64"
    assert item.properties["mlm:output"][0]["result"]["data_type"] == "float64"
    from mlm_export.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="input_dtype='floaty'"):
        export_item(model, input_dtype="floaty", artifact_dir=tmp_path / "b")


class ScalarAndVector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.linear(x)
        return {"y": y, "total": y.sum()}


def test_scalar_output_is_a_value_not_a_batch(tmp_path: Path) -> None:
    from mlm_export import check_item, save_item

    item = export_item(ScalarAndVector(), artifact_dir=tmp_path, bbox=[0, 0, 1, 1], tasks=["regression"])
    results = {o["name"]: o["result"] for o in item.properties["mlm:output"]}
    assert results["total"]["shape"] == [1] and results["total"]["dim_order"] == ["value"]
    assert results["y"]["shape"] == [-1, 2]
    assert check_item(save_item(item, tmp_path / "item.json"), model_class=ScalarAndVector).ok


@pytest.mark.parametrize(("factory", "small", "large", "in_order", "out_order", "task"), [CASES[0], CASES[2]],
                         ids=["Conv1dNet", "VideoSegmenter"])  # fmt: skip
def test_onnx_export_keeps_the_measured_axes(
    factory: type[nn.Module], small: tuple, large: tuple, in_order: list, out_order: list, task: str, tmp_path: Path
) -> None:
    """artifact_format='onnx' takes the axis names the PyTorch adapter measured, and checks against onnxruntime."""
    import numpy as np
    import onnxruntime as ort

    from mlm_export import check_item, save_item

    torch.manual_seed(0)
    item = export_item(factory(), artifact_format="onnx", artifact_dir=tmp_path, bbox=[0, 0, 1, 1])
    spec_in, spec_out = item.properties["mlm:input"][0]["input"], item.properties["mlm:output"][0]["result"]
    assert spec_in["dim_order"] == in_order and spec_out["dim_order"] == out_order
    session = ort.InferenceSession(item.assets["model"].href, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    a = session.run(None, {name: np.random.default_rng(0).standard_normal(small).astype("float32")})[0]
    b = session.run(None, {name: np.random.default_rng(1).standard_normal(large).astype("float32")})[0]
    assert spec_out["shape"] == [-1 if x != y else x for x, y in zip(a.shape, b.shape, strict=True)]
    assert spec_in["shape"] == [-1 if x != y else x for x, y in zip(small, large, strict=True)]
    assert check_item(save_item(item, tmp_path / "item.json")).ok
