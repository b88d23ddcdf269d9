"""Truthful Items: what the builder writes states only what was measured or given (issue 12, points 6-10, 16, 22)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
import torch
import torch_models as tm
import torchvision
from factories import description
from torch import nn

from mlm_export import export_item, save_item, validate_item
from mlm_export.description import InputSpec, Link
from mlm_export.errors import DescriptionError
from mlm_export.stac.builder import MLM_SCHEMA_URI, architecture_name, build_item, to_semver, versioned_item_id

EXTENT = {"bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}
ID = re.compile(r"^[a-z0-9_-]+$")


def _input(item: object) -> dict:
    return item.properties["mlm:input"][0]  # type: ignore[attr-defined]


def test_unknown_scaling_is_omitted_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        item = export_item(torchvision.models.resnet18(num_classes=4), artifact_dir=tmp_path, **EXTENT)
    entry = _input(item)
    for key in ("value_scaling", "resize_type", "pre_processing_function"):
        assert key not in entry  # null would claim "none applies" for a net that needs ImageNet normalisation
    assert "post_processing_function" not in item.properties["mlm:output"][0]
    warned = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(warned) == 1 and "value_scaling" in warned[0] and "value_scaling=" in warned[0]
    assert validate_item(item).valid


def test_explicit_none_applies_writes_null(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        item = export_item(
            tm.TinyConvNet(), artifact_dir=tmp_path, value_scaling="none", resize_type="none",
            none_applies=["pre_processing_function", "post_processing_function"], **EXTENT,
        )  # fmt: skip
    entry = _input(item)
    assert entry["value_scaling"] is None and entry["resize_type"] is None and entry["pre_processing_function"] is None
    assert item.properties["mlm:output"][0]["post_processing_function"] is None
    assert not [r for r in caplog.records if "left out" in r.getMessage()]
    scaled = export_item(
        tm.TinyConvNet(), artifact_dir=tmp_path / "b", value_scaling=[{"type": "scale", "value": 0.0001}],
        resize_type="crop", **EXTENT,
    )  # fmt: skip
    assert _input(scaled)["value_scaling"] == [{"type": "scale", "value": 0.0001}]
    assert _input(scaled)["resize_type"] == "crop"


def test_no_nulls_inside_hyperparameters(tmp_path: Path) -> None:
    item = export_item(
        tm.TinyMLP(), artifact_dir=tmp_path, hyperparameters={"lr": 0.1, "scheduler": None, "opt": {"wd": None}},
        **EXTENT,
    )  # fmt: skip
    hyper = item.properties["mlm:hyperparameters"]
    assert hyper["lr"] == 0.1 and "scheduler" not in hyper and hyper["opt"] == {}
    assert "null" not in json.dumps(hyper)


def test_accelerator_is_not_claimed_from_a_cpu_dry_run(tmp_path: Path) -> None:
    item = export_item(tm.TinyConvNet(), artifact_dir=tmp_path, **EXTENT)
    assert "mlm:accelerator" not in item.properties
    assert "mlm:accelerator_constrained" not in item.properties


def test_torchscript_graph_naming_cuda_is_cuda_bound(tmp_path: Path) -> None:
    class Placed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] < 0:  # never taken: the graph still names the device it was written for
                return x.to("cuda")
            return self.conv(x)

    scripted = torch.jit.script(Placed())
    item = export_item(scripted, artifact_dir=tmp_path, **EXTENT)
    assert item.properties["mlm:accelerator"] == "cuda"
    assert item.properties["mlm:accelerator_constrained"] is True


def test_no_placeholder_classes(tmp_path: Path) -> None:
    item = export_item(torchvision.models.resnet18(num_classes=1000), artifact_dir=tmp_path, **EXTENT)
    out = item.properties["mlm:output"][0]
    assert "classification:classes" not in out
    assert out["result"]["shape"] == [-1, 1000]  # the shape says how many classes there are
    assert len(json.dumps(item.to_dict())) < 20_000
    named = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "n", classes=["a", "b", "c"], **EXTENT)
    assert [c["name"] for c in named.properties["mlm:output"][0]["classification:classes"]] == ["a", "b", "c"]


def test_tool_notes_are_not_the_description(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        item = export_item(tm.TinyConvNet(), artifact_dir=tmp_path, **EXTENT)
    assert "description" not in item.properties
    assert "inferred" in caplog.text  # the notes went to the warnings
    given = export_item(tm.TinyConvNet(), artifact_dir=tmp_path / "g", description="A tiny net.", **EXTENT)
    assert given.properties["description"] == "A tiny net."


def test_default_ids_are_lowercase_unique_and_name_is_not_the_architecture(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.fc = nn.Linear(4, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    first = export_item(Net(2), artifact_dir=tmp_path / "a", **EXTENT)
    second = export_item(Net(3), artifact_dir=tmp_path / "b", **EXTENT)
    assert ID.match(first.id) and ID.match(second.id) and first.id != second.id
    weights = Path(first.assets["model"].href).read_bytes()
    assert first.id == "net-" + hashlib.sha256(weights).hexdigest()[:8]
    props = first.properties
    assert props["mlm:architecture"] == "Net"  # not "test_builder.test_...<locals>.Net" nor "__main__.Net"
    assert props["mlm:name"] != props["mlm:architecture"]
    assert export_item(Net(2), artifact_dir=tmp_path / "c", item_id="mine", name="My net", **EXTENT).id == "mine"


@pytest.mark.parametrize(
    ("path", "name"),
    [("__main__.Seg", "Seg"), ("torch.nn.modules.container.Sequential", "Sequential"), ("ResNet-50", "ResNet-50"),
     ("pkg.mod:Class", "Class")],
)  # fmt: skip
def test_architecture_name(path: str, name: str) -> None:
    assert architecture_name(path) == name


def test_missing_datetime_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, bbox=[0, 0, 1, 1])
    warned = [r for r in caplog.records if "No datetime" in r.getMessage()]
    assert len(warned) == 1 and "datetime=" in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path / "b", **EXTENT)
    assert "No datetime" not in caplog.text


def test_collection_writes_the_collection_link(tmp_path: Path) -> None:
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "art", collection="models", **EXTENT)
    links = [link for link in item.links if link.rel == "collection"]
    assert [link.href for link in links] == ["../collection.json"]
    assert validate_item(item).valid
    (tmp_path / "collection.json").write_text("{}")  # the Collection file is there: the link is kept
    path = save_item(item, tmp_path / "items" / "item.json", allow_outside=[tmp_path])  # the weights lie in ../art
    document = json.loads(path.read_text())
    assert document["collection"] == "models"
    assert {"rel": "collection", "href": "../collection.json", "type": "application/json"} in document["links"]
    assert validate_item(path, allow_outside=[tmp_path]).valid


# -- semver, declared extensions, whole-globe default, ml-aoi links ------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.14.1+cu130", "2.14.1+cu130"),
        ("2.1", "2.1.0"),
        ("2", "2.0.0"),
        ("2.5.0a0+git1234", "2.5.0-a0+git1234"),
        ("1.32.0", "1.32.0"),
        ("2.6.0.dev20240101", "2.6.0-dev20240101"),
        ("v1.2.3", "1.2.3"),
        ("3.0.0rc1", "3.0.0-rc1"),
        ("1.0.post1", "1.0.0-post1"),
        ("2.1.0-beta.2", "2.1.0-beta.2"),
    ],
)
def test_to_semver(version: str, expected: str) -> None:
    assert to_semver(version) == expected


def test_to_semver_rejects_text() -> None:
    with pytest.raises(DescriptionError, match="not a version"):
        to_semver("latest")


def test_builder_declares_exactly_the_extensions_it_uses(tmp_path: Path, schema_dir: Path) -> None:
    item = build_item(description(tmp_path))
    assert item.stac_extensions == [
        MLM_SCHEMA_URI,
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
        "https://stac-extensions.github.io/eo/v2.0.0/schema.json",  # eo:common_name of the Sentinel-2 bands
        "https://stac-extensions.github.io/processing/v1.1.0/schema.json",  # processing:software, always
    ]
    props = item.properties
    assert props["mlm:framework_version"] == "2.14.1+cu130"
    assert props["mlm:pretrained_source"] is None
    assert (
        props["bands"]
        == item.assets["model"].extra_fields["bands"]
        == [{"name": b, "eo:common_name": c} for b, c in (("B02", "blue"), ("B03", "green"), ("B04", "red"),
                                                           ("B08", "nir"))]
    )  # fmt: skip
    assert props["mlm:input"][0]["bands"] == ["B02", "B03", "B04", "B08"]  # MLM allows no eo: keys there
    assert item.assets["model"].extra_fields["mlm:artifact_type"] == "safetensors.torch.save_file"
    assert validate_item(item, schema_dir).valid


def test_builder_needs_a_model_artifact(tmp_path: Path) -> None:
    with pytest.raises(DescriptionError, match="mlm:model"):
        build_item(description(tmp_path, artifacts=()))


def test_builder_whole_globe_and_now(tmp_path: Path, caplog: pytest.LogCaptureFixture, schema_dir: Path) -> None:
    described = description(tmp_path, bbox=None, start_datetime=None, end_datetime=None)
    with caplog.at_level(logging.WARNING):
        item = build_item(described)
    assert item.bbox == [-180.0, -90.0, 180.0, 90.0]
    assert "whole globe" in caplog.text
    assert item.datetime is not None
    assert validate_item(item, schema_dir).valid


def test_builder_ml_aoi_links_and_processing(tmp_path: Path, schema_dir: Path) -> None:
    described = description(tmp_path)
    first = described.inputs[0]
    described = described.replace(
        links=(
            Link("derived_from", "https://example.com/train.json", "application/json", extra={"ml-aoi:split": "train"}),
        ),
        inputs=(InputSpec(**{**first.__dict__, "pre_processing": ({"format": "python", "expression": "pkg.mod:f"},)}),),
    )
    item = build_item(described)
    assert "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json" in item.stac_extensions
    assert "https://stac-extensions.github.io/processing/v1.1.0/schema.json" in item.stac_extensions
    assert item.properties["mlm:input"][0]["pre_processing_function"] == {"format": "python", "expression": "pkg.mod:f"}
    assert validate_item(item, schema_dir).valid


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.1.0", "net-10bd8f1f-v1_1_0"),
        ("v2", "net-10bd8f1f-v2"),
        ("epoch=3-step=120", "net-10bd8f1f-vepoch_3-step_120"),
        ("2026-01 RC", "net-10bd8f1f-v2026-01_rc"),
        (None, "net-10bd8f1f"),
        ("...", "net-10bd8f1f"),
    ],
)
def test_versioned_item_id(version: str | None, expected: str) -> None:
    assert versioned_item_id("net-10bd8f1f", version) == expected
    assert ID.match(expected)
    assert versioned_item_id(expected, version) == expected  # applied once
