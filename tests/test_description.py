"""description.py: the dataclasses check their own invariants and round-trip through plain dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import description

from mlm_export.description import (
    Artifact,
    ClassInfo,
    InputSpec,
    ModelDescription,
    OutputSpec,
    TensorSpec,
    ValueScaling,
    classes_from,
    hyperparameter_key,
    slugify,
)
from mlm_export.errors import DescriptionError


def test_hyperparameter_key() -> None:
    assert hyperparameter_key("learning rate") == "learning_rate"
    assert hyperparameter_key("model.lr") == "model.lr"


def test_tensor_spec_checks_its_invariants() -> None:
    with pytest.raises(DescriptionError, match="dim_order"):
        TensorSpec("x", (1, 3), ("batch",), "float32")
    with pytest.raises(DescriptionError, match="data_type 'bool'"):
        TensorSpec("x", (1,), ("batch",), "bool")
    with pytest.raises(DescriptionError, match="-1"):
        TensorSpec("x", (-2,), ("batch",), "float32")
    with pytest.raises(DescriptionError, match="band names need 'bands'"):
        InputSpec("x", (1, 2), ("batch", "channel"), "float32", bands=("a", "b"))
    with pytest.raises(DescriptionError, match="needs band names"):
        InputSpec("x", (1, 2), ("batch", "bands"), "float32")
    with pytest.raises(DescriptionError, match="must not be empty"):
        InputSpec("x", (1, 2), ("batch", "channel"), "float32", value_scaling=())
    with pytest.raises(DescriptionError, match="needs 'stddev'"):
        ValueScaling("z-score", mean=1.0)
    with pytest.raises(DescriptionError, match="task 'dreaming'"):
        OutputSpec("y", (1, 2), ("batch", "class"), "float32", tasks=("dreaming",))


def test_artifact_role_rule() -> None:
    with pytest.raises(DescriptionError, match="artifact_type is required"):
        Artifact("model", roles=("mlm:model",), path="x")
    with pytest.raises(DescriptionError, match="forbidden"):
        Artifact("data", roles=("weights",), path="x", artifact_type="onnx")


def test_accelerator_cpu_rejected(tmp_path: Path) -> None:
    with pytest.raises(DescriptionError, match="'amd64'"):
        description(tmp_path, accelerator="cpu")


def test_classes_from_variants() -> None:
    assert classes_from(2) == (ClassInfo(0, "class_0", "Class 0"), ClassInfo(1, "class_1", "Class 1"))
    by_name = classes_from(["Water body", "Forest"])
    assert [c.name for c in by_name] == ["Water-body", "Forest"]
    assert by_name[0].description == "Water body"
    by_dict = classes_from([{"value": 5, "name": "urban", "color_hint": "#ff0000"}])
    assert by_dict[0] == ClassInfo(5, "urban", "urban", "ff0000")
    assert slugify("  a b/c ") == "a-b-c"


def test_description_round_trips_through_dict(tmp_path: Path) -> None:
    original = description(tmp_path, links=())
    data = json.loads(json.dumps(original.to_dict()))
    assert ModelDescription.from_dict(data) == original
