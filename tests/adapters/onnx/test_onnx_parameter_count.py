"""ONNX ``mlm:total_parameters``: parameters only (no shape constants, no BatchNorm statistics), as in torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from mlm_export import inspect_model


class Reshaping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).reshape(x.shape[0], -1))


def test_onnx_count_of_a_torch_export_equals_the_torch_count(tmp_path: Path) -> None:
    model = Reshaping().eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), str(path))
    proto = onnx.load(str(path))
    int_constants = [t for t in proto.graph.initializer if t.data_type == TensorProto.INT64]
    assert int_constants, "the exporter wrote a shape constant (the case the count must skip)"
    expected = 3 * 4 * 9 + 4 + 144 * 5 + 5
    assert sum(p.numel() for p in model.parameters()) == expected
    assert inspect_model(path).total_parameters == expected


def test_batch_norm_statistics_are_not_parameters(tmp_path: Path) -> None:
    channels = 4
    inits = [
        numpy_helper.from_array(np.ones(channels, np.float32), name)
        for name in ("scale", "bias", "running_mean", "running_var")
    ]
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "running_mean", "running_var"], ["y"])
    graph = helper.make_graph(
        [node], "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "bn.onnx"
    onnx.save(model, str(path))
    torch_bn = nn.BatchNorm2d(channels)
    assert inspect_model(path).total_parameters == sum(p.numel() for p in torch_bn.parameters()) == 2 * channels


@pytest.mark.parametrize("data_type", [TensorProto.INT32, TensorProto.BOOL])
def test_index_and_mask_initializers_are_not_parameters(tmp_path: Path, data_type: int) -> None:
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    extra = helper.make_tensor("unused_constant", data_type, [7], [1] * 7)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[weight, extra],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    assert inspect_model(path).total_parameters == 6
