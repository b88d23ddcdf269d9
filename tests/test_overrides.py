"""Overrides: what the caller gives (tasks, bands, classes, extent, name...) applied to a measured description."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import description

from mlm_export import validate_item
from mlm_export.api import apply_overrides
from mlm_export.description import InputSpec, ModelDescription, OutputSpec
from mlm_export.errors import ConfigurationError
from mlm_export.stac.builder import build_item


def _plain(tmp_path: Path) -> ModelDescription:
    described = description(tmp_path)
    return described.replace(
        tasks=(),
        band_definitions=(),
        inputs=(InputSpec("image", (-1, 4, 32, 32), ("batch", "channel", "height", "width"), "float32"),),
        outputs=(OutputSpec("logits", (-1, 3), ("batch", "class"), "float32"),),
        hyperparameters={},
    )


def test_overrides_infer_tasks_and_classes(tmp_path: Path, schema_dir: Path) -> None:
    described = apply_overrides(_plain(tmp_path))
    assert described.tasks == ("classification",)
    assert described.outputs[0].classes == ()  # unknown names: the output shape already says there are 3
    assert any("inferred" in note for note in described.notes)
    item = build_item(described)
    assert "description" not in item.properties  # notes are warnings, not the publisher's text
    assert validate_item(item, schema_dir).valid


def test_overrides_bands_and_classes(tmp_path: Path, schema_dir: Path) -> None:
    described = apply_overrides(
        _plain(tmp_path), tasks=["classification"], bands=["B02", "B03", "B04", "B08"], classes=["a", "b", "c"]
    )
    assert described.inputs[0].dim_order[1] == "bands"
    assert [b.name for b in described.band_definitions] == ["B02", "B03", "B04", "B08"]
    assert validate_item(build_item(described), schema_dir).valid


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"bands": ["B02"]}, "1 bands but input 'image' has 4 channels"),
        ({"classes": ["a", "b"]}, "2 entries but output 'logits' has 3 classes"),
        ({"bbox": [0, 0, 10, 95]}, "latitudes"),
        ({"bbox": [10, 0, -10, 5]}, "west 10.0 is east of east -10.0"),
        ({"bbox": [1, 2, 3]}, "4 numbers"),
        ({"datetime": "yesterday"}, "ISO 8601"),
        ({"start_datetime": "2021-01-01", "end_datetime": "2020-01-01"}, "before start_datetime"),
        ({"start_datetime": "2021-01-01"}, "together"),
        ({"name": "x"}, "not a valid mlm:name"),
        ({"tasks": ["dreaming"]}, "dreaming"),
        ({"value_scaling": [{"type": "z-score", "mean": 1, "stddev": 1}] * 2}, "2 entries"),
    ],
)
def test_override_errors_name_the_argument(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        apply_overrides(_plain(tmp_path), **kwargs)


def test_antimeridian_bbox_allowed(tmp_path: Path) -> None:
    assert apply_overrides(_plain(tmp_path), bbox=[170, -10, -170, 10]).bbox == (170.0, -10.0, -170.0, 10.0)
