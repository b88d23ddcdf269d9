"""Small ONNX graphs built with ``onnx.helper`` for the ONNX adapter tests and benchmark (seeded, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(graph: onnx.GraphProto, *, opsets: dict[str, int] | None = None, **fields: object) -> onnx.ModelProto:
    imports = [helper.make_opsetid(domain, version) for domain, version in (opsets or {"": OPSET}).items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="mlm-export-tests", producer_version="1.0")
    model.ir_version = 8
    for key, value in fields.items():
        setattr(model, key, value)
    return model


def multi_io_model() -> onnx.ModelProto:
    """Three inputs (float32 image, bool mask, int64 ids) with symbolic dims, four outputs of four types.

    Outputs are declared with unknown dims so that ONNX shape inference has to fill them:
    ``segmentation`` float32 [N, 2, H, W], ``scores`` float16 [N, 5], ``id_sum`` int64 [N], ``positive`` bool [N].
    """
    rng = np.random.default_rng(0)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    mask = helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 1, "H", "W"])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])
    outputs = [
        helper.make_tensor_value_info("segmentation", TensorProto.FLOAT, [None] * 4),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT16, [None, None]),
        helper.make_tensor_value_info("id_sum", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("positive", TensorProto.BOOL, [None]),
    ]
    initializers = [
        numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.standard_normal((2, 5)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(0, np.int64), "zero_i"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"]),
        helper.make_node("Where", ["mask", "conv", "zero"], ["segmentation"]),
        helper.make_node("GlobalAveragePool", ["segmentation"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc_w"], ["logits"]),
        helper.make_node("Cast", ["logits"], ["scores"], to=TensorProto.FLOAT16),
        helper.make_node("ReduceSum", ["ids", "axis1"], ["id_sum"], keepdims=0),
        helper.make_node("Greater", ["id_sum", "zero_i"], ["positive"]),
    ]
    graph = helper.make_graph(nodes, "multi_io", [image, mask, ids], outputs, initializers)
    model = _model(graph, doc_string="A test graph with several inputs and outputs.")
    helper.set_model_props(model, {"author": "tests", "mean": "0.5"})
    return model


def linear_model(in_features: int = 4, out_features: int = 3, *, name: str = "linear") -> onnx.ModelProto:
    """``y = x @ W + b`` with x [batch, in_features]; W and b are initializers."""
    rng = np.random.default_rng(1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_features])
    weight = numpy_helper.from_array(rng.standard_normal((in_features, out_features)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(out_features).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    return _model(helper.make_graph(nodes, name, [x], [y], [weight, bias]))


def conv_model(channels: int = 3, classes: int = 4) -> onnx.ModelProto:
    """A 1x1 convolution over an image [batch, channels, height, width] -> [batch, classes, height, width]."""
    rng = np.random.default_rng(2)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", channels, "height", "width"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, "height", "width"])
    weight = numpy_helper.from_array(rng.standard_normal((classes, channels, 1, 1)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["image", "w"], ["logits"])
    return _model(helper.make_graph([node], "pixel_classifier", [x], [y], [weight]))


def save_with_external_data(model: onnx.ModelProto, path: Path, *, one_file: bool = True) -> Path:
    """Save a copy of ``model`` with every initializer in external data (``<name>.data``, or one file per tensor)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # onnx.save_model moves the tensors of the proto it saves out to the file
    onnx.save_model(
        copy,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=one_file,
        location=f"{path.name}.data" if one_file else None,
        size_threshold=0,
    )
    return path


def custom_op_model() -> onnx.ModelProto:
    """A valid graph whose only op lives in a custom domain that onnxruntime does not implement."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="org.example.custom")
    graph = helper.make_graph([node], "custom", [x], [y])
    return _model(graph, opsets={"": OPSET, "org.example.custom": 1})


def invalid_model() -> onnx.ModelProto:
    """A graph the ONNX checker rejects: a node reads a tensor nobody produces."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Add", ["x", "missing"], ["y"])
    return _model(helper.make_graph([node], "broken", [x], [y]))


def big_external_model(directory: Path, size_mb: int, *, name: str = "big") -> Path:
    """``y = x @ W`` where W (float32, ~``size_mb`` MiB) lives in a sparse external data file created instantly.

    The data file is made with ``truncate`` (a hole of zeros), and the tensor's external-data fields are set by
    hand, so building a 1 GB model costs no write time.
    """
    rows = 1024
    columns = max(1, size_mb * 1024 * 1024 // 4 // rows)
    location = f"{name}.onnx.data"
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[rows, columns])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(rows * columns * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", columns])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], name, [x], [y], [weight])
    path = Path(directory) / f"{name}.onnx"
    onnx.save_model(_model(graph), str(path))
    with open(Path(directory) / location, "wb") as stream:
        stream.truncate(rows * columns * 4)
    return path


def initializer_elements(model: onnx.ModelProto) -> int:
    """Ground truth: the element count of every weight initializer of the main graph (numpy, from dims).

    Shape/index constants (int32/int64) and masks (bool) are not weights.
    """
    skipped = (TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL)
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer if t.data_type not in skipped))


def onnxruntime_datasets() -> list[Path]:
    """The small ``*.onnx`` models shipped inside the installed onnxruntime package (may be empty)."""
    import onnxruntime

    root = Path(os.path.dirname(onnxruntime.__file__))
    return sorted(root.rglob("*.onnx"))


def sequence_output_model() -> onnx.ModelProto:
    """Two outputs: a tensor and a ``seq(tensor(float))`` (a non-tensor output, like a ZipMap's)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["batch", 3])
    sequence = helper.make_tensor_sequence_value_info("pieces", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Add", ["x", "x"], ["doubled"]),
        helper.make_node("SequenceConstruct", ["x", "doubled"], ["pieces"]),
    ]
    return _model(helper.make_graph(nodes, "sequence", [x], [y, sequence]))


def allocating_model(base_width: int = 64) -> onnx.ModelProto:
    """[batch, 3, height, width] -> [batch]; wider than ``base_width``, it asks onnxruntime for ~4 TB per extra column.

    Shape inference cannot see the size of the ConstantOfShape buffer, so the probes run it for real, and the
    allocation fails inside onnxruntime's arena (``Fail: Failed to allocate memory``): a real out-of-memory.
    """
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"])
    constants = [
        numpy_helper.from_array(np.array([3], dtype=np.int64), "width_index"),
        numpy_helper.from_array(np.array([base_width], dtype=np.int64), "base_width"),
        numpy_helper.from_array(np.array([10**12], dtype=np.int64), "per_column"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "image_axes"),
    ]
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Gather", ["shape", "width_index"], ["width"]),
        helper.make_node("Sub", ["width", "base_width"], ["extra"]),
        helper.make_node("Max", ["extra", "zero"], ["extra_columns"]),
        helper.make_node("Mul", ["extra_columns", "per_column"], ["buffer_size"]),
        helper.make_node("ConstantOfShape", ["buffer_size"], ["buffer"], value=fill),
        helper.make_node("ReduceSum", ["buffer"], ["buffer_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["image", "image_axes"], ["image_sum"], keepdims=0),
        helper.make_node("Add", ["image_sum", "buffer_sum"], ["total"]),
    ]
    return _model(helper.make_graph(nodes, "allocating", [x], [y], constants))


def two_image_model(classes: int = 4) -> onnx.ModelProto:
    """Two image inputs, ``optical`` [batch, 3, H, W] and ``sar`` [batch, 2, H, W], stacked and classified per pixel."""
    rng = np.random.default_rng(3)
    optical = helper.make_tensor_value_info("optical", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    sar = helper.make_tensor_value_info("sar", TensorProto.FLOAT, ["batch", 2, "height", "width"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, "height", "width"])
    weight = numpy_helper.from_array(rng.standard_normal((classes, 5, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Concat", ["optical", "sar"], ["stacked"], axis=1),
        helper.make_node("Conv", ["stacked", "w"], ["logits"]),
    ]
    return _model(helper.make_graph(nodes, "two_images", [optical, sar], [y], [weight]))
