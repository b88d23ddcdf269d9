"""adapters/onnx/embedded.py: metadata embedded in metadata_props."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx_models import (
    conv_model,
    initializer_elements,
    linear_model,
    save_with_external_data,
)
from onnx_truth import (
    _quiet_extent,  # noqa: F401 - autouse fixture: registered by importing it
    assert_assets_hashed,
    assert_valid,
    files_in,
    item_of,
)

from mlm_export.adapters import ExportOptions
from mlm_export.adapters import onnx as adapter
from mlm_export.api import apply_overrides, export_item, inspect_model
from mlm_export.errors import ConfigurationError

METADATA = {
    "name": "Pixel Classifier",
    "tasks": ["semantic-segmentation"],
    "bands": ["red", {"name": "green", "description": "Green band"}, "blue"],
    "classes": ["water", "forest", "urban", "bare soil"],
    "description": "Four-class land cover.",
}


def test_embedded_metadata_round_trip(tmp_path: Path) -> None:
    model = conv_model()
    artifacts = tmp_path / "artifacts"

    written = adapter.describe(
        model, ExportOptions.from_flat(artifact_dir=artifacts, embed_metadata=True, metadata=METADATA)
    )

    assert not model.metadata_props  # the copy carries the metadata, not the caller's proto
    path = Path(written.artifacts[0].path)
    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(stored["mlm"])["name"] == "Pixel Classifier"

    returned = adapter.describe(path, ExportOptions())  # the adapter returns the metadata, export_item applies it
    assert returned.inputs[0].bands == () and returned.embedded["classes"] == METADATA["classes"]
    recovered = inspect_model(path)

    assert recovered.name == "Pixel Classifier"
    assert recovered.tasks == ("semantic-segmentation",)
    assert recovered.description == "Four-class land cover."
    assert recovered.inputs[0].bands == ("red", "green", "blue")
    assert recovered.inputs[0].dim_order == ("batch", "bands", "height", "width")
    assert [b.name for b in recovered.band_definitions] == ["red", "green", "blue"]
    assert recovered.band_definitions[1].description == "Green band"
    assert [c.name for c in recovered.outputs[0].classes] == ["water", "forest", "urban", "bare-soil"]
    assert [c.value for c in recovered.outputs[0].classes] == [0, 1, 2, 3]
    assert recovered.total_parameters == written.total_parameters == initializer_elements(model)

    item = item_of(recovered)
    assert item.properties["mlm:name"] == "Pixel Classifier"
    assert item.properties["mlm:input"][0]["bands"] == ["red", "green", "blue"]
    classes = item.properties["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in classes] == ["water", "forest", "urban", "bare-soil"]
    assert_assets_hashed(item)
    assert_valid(item)


def test_embedding_into_a_file_writes_a_copy(tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    path = save_with_external_data(conv_model(), source_dir / "conv.onnx")
    originals = {p.name: p.read_bytes() for p in source_dir.iterdir()}
    artifacts = tmp_path / "artifacts"

    described = adapter.describe(
        path, ExportOptions.from_flat(artifact_dir=artifacts, embed_metadata=True, metadata=METADATA)
    )

    assert {p.name: p.read_bytes() for p in source_dir.iterdir()} == originals
    assert files_in(artifacts) == ["Pixel-Classifier.onnx", "conv.onnx.data"]  # one slug rule: case kept
    assert [Path(a.path).parent for a in described.artifacts] == [artifacts, artifacts]
    recovered = inspect_model(artifacts / "Pixel-Classifier.onnx")
    assert recovered.name == "Pixel Classifier" and recovered.inputs[0].bands == ("red", "green", "blue")

    # into the source's own directory: the data file is shared and the source is not overwritten
    same = adapter.describe(
        path,
        ExportOptions.from_flat(artifact_dir=source_dir, embed_metadata=True, metadata={**METADATA, "name": "conv"}),
    )
    assert {p.name: p.read_bytes() for p in source_dir.iterdir() if p.name in originals} == originals
    assert sorted(Path(a.path).name for a in same.artifacts) == ["conv-mlm.onnx", "conv.onnx.data"]
    assert adapter.describe(source_dir / "conv-mlm.onnx", ExportOptions()).name == "conv"


def test_embedded_metadata_through_export_item(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), str(path))
    artifacts = tmp_path / "artifacts"
    item = export_item(
        path,
        artifact_dir=artifacts,
        embed_metadata=True,
        name="Pixel Classifier",
        tasks=["semantic-segmentation"],
        bands=["red", "green", "blue"],
        classes=["water", "forest", "urban", "bare soil"],
        validate=False,
    )
    assert_valid(item)
    copy = Path(item.assets["model"].href)
    assert copy.parent == artifacts
    recovered = inspect_model(copy)
    assert recovered.name == "Pixel Classifier"
    assert recovered.inputs[0].bands == ("red", "green", "blue")
    assert len(recovered.outputs[0].classes) == 4


def test_embedded_description_dict_is_read(tmp_path: Path) -> None:
    """``metadata_props["mlm"]`` may also hold a full ``ModelDescription.to_dict()`` (as the torch adapter writes)."""
    first = adapter.describe(conv_model(), ExportOptions.from_flat(artifact_dir=tmp_path / "a"))
    labelled = apply_overrides(first, name="Land Cover", bands=["r", "g", "b"], classes=["w", "x", "y", "z"])
    model = conv_model()
    onnx.helper.set_model_props(model, {"mlm": json.dumps(labelled.to_dict())})
    path = tmp_path / "conv.onnx"
    onnx.save(model, str(path))

    recovered = inspect_model(path)

    assert recovered.name == "Land Cover"
    assert recovered.inputs[0].bands == ("r", "g", "b")
    assert [c.name for c in recovered.outputs[0].classes] == ["w", "x", "y", "z"]


def test_invalid_embedded_metadata_is_ignored_with_a_warning(tmp_path: Path) -> None:
    model = linear_model()
    onnx.helper.set_model_props(model, {"mlm": "{not json"})
    path = tmp_path / "linear.onnx"
    onnx.save(model, str(path))
    with pytest.warns(RuntimeWarning, match="not JSON"):
        described = adapter.describe(path, ExportOptions())
    assert described.name == "linear"


def test_embedded_values_that_do_not_fit_are_ignored_with_a_warning(tmp_path: Path) -> None:
    """Embedded values are defaults: two band names for a three-channel input warn instead of failing the export."""
    model = conv_model()
    onnx.helper.set_model_props(model, {"mlm": json.dumps({"name": "Two Bands", "bands": ["a", "b"]})})
    path = tmp_path / "conv.onnx"
    onnx.save(model, str(path))
    with pytest.warns(RuntimeWarning, match="could not be applied"):
        recovered = inspect_model(path)
    assert recovered.inputs[0].bands == ()
    # the caller's own values that do not fit are still an error
    with pytest.raises(ConfigurationError, match="bands"):
        inspect_model(path, bands=["x", "y"])
