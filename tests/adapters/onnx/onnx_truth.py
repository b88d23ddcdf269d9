"""Ground truth for the ONNX adapter tests, computed independently of the adapter (onnx.helper, numpy, onnxruntime)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import mlm_export
from mlm_export.api import apply_overrides, hash_artifacts, item_from_description
from mlm_export.description import ModelDescription

REPO = Path(__file__).resolve().parents[3]

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}

NUMPY_TO_MLM = {"bool": "other", "object": "other", "complex64": "cfloat32", "complex128": "cfloat64"}


def multihash(path: str | os.PathLike[str]) -> str:
    return "1220" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def initializer_bytes(model: onnx.ModelProto, base: Path | None = None) -> int:
    if base is not None:
        model = onnx.load(str(base))
    return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer))


def ort_truth(path: Path, first: dict[str, tuple[int, ...]], second: dict[str, tuple[int, ...]] | None = None) -> dict:
    """Output name -> (shape with -1 where two real runs differ, MLM data type), from onnxruntime itself."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def feeds(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        return {i.name: np.ones(shapes[i.name], dtype=ORT_TYPES[i.type]) for i in session.get_inputs()}

    run_a = session.run(None, feeds(first))
    run_b = session.run(None, feeds(second)) if second is not None else run_a
    truth = {}
    for output, a, b in zip(session.get_outputs(), run_a, run_b, strict=True):
        if isinstance(a, np.ndarray):
            shape = [x if x == y else -1 for x, y in zip(a.shape, b.shape, strict=True)]
            truth[output.name] = (shape, NUMPY_TO_MLM.get(a.dtype.name, a.dtype.name))
        else:
            truth[output.name] = ([len(a)] if len(a) == len(b) else [-1], "other")
    return truth


def ort_declared_inputs(path: Path) -> dict[str, list[int]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {i.name: [d if isinstance(d, int) else -1 for d in i.shape] for i in session.get_inputs()}


def item_outputs(item: Any) -> dict[str, tuple[list[int], str]]:
    return {o["name"]: (o["result"]["shape"], o["result"]["data_type"]) for o in item.properties["mlm:output"]}


def item_inputs(item: Any) -> dict[str, tuple[list[int], str]]:
    return {i["name"]: (i["input"]["shape"], i["input"]["data_type"]) for i in item.properties["mlm:input"]}


def assert_valid(item: Any) -> None:
    report = mlm_export.validate_item(item)
    assert report.valid, report.problems


def assert_assets_hashed(item: Any) -> None:
    for key, asset in item.assets.items():
        assert asset.extra_fields["file:checksum"] == multihash(asset.href), key
        assert asset.extra_fields["file:size"] == os.path.getsize(asset.href), key


def item_of(described: ModelDescription, **overrides: Any) -> Any:
    described = hash_artifacts(apply_overrides(described, **overrides))
    return item_from_description(described, validate=False)


def files_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


@pytest.fixture(autouse=True)
def _quiet_extent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="mlm_export.stac.builder")
