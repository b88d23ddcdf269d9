"""Property tests: random valid descriptions give valid items; random single-field corruptions are reported."""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlm_export import validate_item
from mlm_export.description import (
    DATA_TYPES,
    TASKS,
    Artifact,
    Band,
    ClassInfo,
    InputSpec,
    ModelDescription,
    OutputSpec,
    ValueScaling,
)
from mlm_export.stac.builder import build_item

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "schemas"
REMOTE = Artifact(
    key="model",
    roles=("mlm:model", "mlm:weights"),
    href="https://models.example.com/model.safetensors",
    artifact_type="safetensors.torch.save_file",
    file_size=1234,
    file_checksum="1220" + "ab" * 32,
)
LAYOUTS = {
    2: ("batch", "channel"),
    3: ("batch", "time", "channel"),
    4: ("batch", "channel", "height", "width"),
    5: ("batch", "time", "channel", "height", "width"),
}

names = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12).map(lambda s: f"m{s}x")
sizes = st.one_of(st.just(-1), st.integers(1, 512))
floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def value_scalings(draw: st.DrawFn) -> ValueScaling:
    kind = draw(st.sampled_from(["min-max", "z-score", "clip", "clip-min", "clip-max", "offset", "scale"]))
    if kind == "z-score":
        return ValueScaling(kind, mean=draw(floats), stddev=draw(st.floats(1e-3, 1e4)))
    if kind in ("min-max", "clip"):
        low = draw(floats)
        return ValueScaling(kind, minimum=low, maximum=low + draw(st.floats(1e-3, 1e4)))
    if kind == "clip-min":
        return ValueScaling(kind, minimum=draw(floats))
    if kind == "clip-max":
        return ValueScaling(kind, maximum=draw(floats))
    return ValueScaling(kind, value=draw(st.floats(1e-3, 1e4)))


@st.composite
def inputs(draw: st.DrawFn, bands: tuple[str, ...]) -> InputSpec:
    rank = draw(st.sampled_from(sorted(LAYOUTS)))
    order = list(LAYOUTS[rank])
    shape = [draw(sizes) for _ in range(rank)]
    channel = order.index("channel")
    if bands:
        order[channel] = "bands"
        shape[channel] = draw(st.sampled_from([-1, len(bands)]))
    scaling = None
    if draw(st.booleans()):
        one = draw(value_scalings())
        scaling = (one,) if not bands or draw(st.booleans()) else tuple(one for _ in bands)
    return InputSpec(
        name=draw(names),
        shape=tuple(shape),
        dim_order=tuple(order),
        data_type=draw(st.sampled_from(DATA_TYPES)),
        bands=bands,
        value_scaling=scaling,
        resize_type=draw(st.sampled_from([None, "crop", "interpolation-linear"])),
    )


@st.composite
def outputs(draw: st.DrawFn) -> OutputSpec:
    count = draw(st.integers(1, 6))
    segmentation = draw(st.booleans())
    shape = (-1, count, draw(sizes), draw(sizes)) if segmentation else (-1, count)
    order = ("batch", "class", "height", "width") if segmentation else ("batch", "class")
    task = "semantic-segmentation" if segmentation else draw(st.sampled_from(TASKS))
    classes = ()
    if draw(st.booleans()):
        classes = tuple(ClassInfo(i, f"c{i}", f"Class {i}") for i in range(count))
    return OutputSpec(draw(names), shape, order, draw(st.sampled_from(DATA_TYPES)), tasks=(task,), classes=classes)


@st.composite
def descriptions(draw: st.DrawFn) -> ModelDescription:
    band_names = tuple(draw(st.lists(st.sampled_from(["B01", "B02", "B03", "B04", "B08", "B11"]), unique=True,
                                     max_size=4)))  # fmt: skip
    model_inputs = tuple(draw(st.lists(inputs(band_names), min_size=1, max_size=2, unique_by=lambda i: i.name)))
    model_outputs = tuple(draw(st.lists(outputs(), min_size=1, max_size=2, unique_by=lambda o: o.name)))
    west = draw(st.floats(-180, 170))
    south = draw(st.floats(-90, 80))
    return ModelDescription(
        name=draw(names),
        architecture=draw(st.text(min_size=1, max_size=20)),
        tasks=tuple(dict.fromkeys(t for o in model_outputs for t in o.tasks)),
        inputs=model_inputs,
        outputs=model_outputs,
        framework=draw(st.sampled_from(["PyTorch", "ONNX", "scikit-learn"])),
        framework_version=draw(st.sampled_from(["2.14.1+cu130", "1.32.0", "2.1", "1.0.0rc1"])),
        total_parameters=draw(st.integers(0, 10**12)),
        memory_size=draw(st.integers(0, 10**12)),
        accelerator=draw(st.sampled_from([None, "amd64", "cuda"])),
        pretrained=draw(st.sampled_from([None, True, False])),
        hyperparameters=draw(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=3)),
        artifacts=(REMOTE,),
        band_definitions=tuple(Band(b) for b in band_names),
        bbox=(west, south, west + draw(st.floats(0.001, 10)), south + draw(st.floats(0.001, 10))),
        datetime="2024-05-01T00:00:00+00:00",
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(descriptions())
def test_random_valid_descriptions_give_valid_items(described: ModelDescription) -> None:
    item = build_item(described)
    report = validate_item(item, SCHEMA_DIR)
    assert report.valid, [str(p) for p in report.problems]


def _first_input(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["properties"]["mlm:input"][0]


CORRUPTIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "framework_version": lambda d: d["properties"].update({"mlm:framework_version": "2.1"}),
    "accelerator": lambda d: d["properties"].update({"mlm:accelerator": "cpu"}),
    "name": lambda d: d["properties"].update({"mlm:name": "1"}),
    "tasks": lambda d: d["properties"].update({"mlm:tasks": ["guessing"]}),
    "data_type": lambda d: _first_input(d)["input"].update({"data_type": "bool"}),
    "shape": lambda d: _first_input(d)["input"].update({"shape": [-2, *_first_input(d)["input"]["shape"][1:]]}),
    "dim_order_case": lambda d: _first_input(d)["input"].update(
        {"dim_order": ["BATCH", *_first_input(d)["input"]["dim_order"][1:]]}
    ),
    "dim_order_length": lambda d: _first_input(d)["input"].update(
        {"dim_order": _first_input(d)["input"]["dim_order"][:-1]}
    ),
    "value_scaling": lambda d: _first_input(d).update({"value_scaling": []}),
    "checksum_prefix": lambda d: d["assets"]["model"].update({"file:checksum": "ab" * 32}),
    "checksum_case": lambda d: d["assets"]["model"].update({"file:checksum": "1220" + "AB" * 32}),
    "artifact_type": lambda d: d["assets"]["model"].pop("mlm:artifact_type"),
    "model_role": lambda d: d["assets"]["model"].update({"roles": ["weights"]}),
    "hyperparameters": lambda d: d["properties"].update({"mlm:hyperparameters": {}}),
    "misspelled_key": lambda d: d["properties"].update({"mlm:framwork": "PyTorch"}),
    "missing_input": lambda d: d["properties"].pop("mlm:input"),
    "size": lambda d: d["assets"]["model"].update({"file:size": -1}),
    "output_tasks": lambda d: d["properties"]["mlm:output"][0].update({"tasks": ["nothing"]}),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(descriptions(), st.sampled_from(sorted(CORRUPTIONS)))
def test_single_field_corruptions_are_reported(described: ModelDescription, corruption: str) -> None:
    doc = copy.deepcopy(build_item(described).to_dict(include_self_link=False, transform_hrefs=False))
    CORRUPTIONS[corruption](doc)
    report = validate_item(doc, SCHEMA_DIR)
    assert not report.valid, corruption
