"""Description invariants, builder rules, hashing, writer and semver — no framework needed."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from factories import description

from mlm_export import save_item, validate_item
from mlm_export.api import apply_overrides
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
from mlm_export.errors import (
    ArtifactNotFoundError,
    ConfigurationError,
    DescriptionError,
    OutputError,
    OutputExistsError,
    SourceError,
)
from mlm_export.hashing import hash_file, is_multihash
from mlm_export.stac.builder import MLM_SCHEMA_URI, build_item, to_semver

# -- hashing -------------------------------------------------------------------------------------------------


def test_multihash_of_text_test(tmp_path: Path) -> None:
    path = tmp_path / "test.txt"
    path.write_bytes(b"test")
    digest = hash_file(path)
    assert digest.checksum == "12209f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert digest.size == 4


def test_hash_matches_hashlib_across_buffer_boundaries(tmp_path: Path) -> None:
    data = os.urandom(8 * 1024 * 1024 * 2 + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = hash_file(path, progress=False)
    assert digest.checksum == "1220" + hashlib.sha256(data).hexdigest()
    assert digest.size == os.path.getsize(path)
    assert is_multihash(digest.checksum)


def test_hash_progress_bar_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 1000)
    assert hash_file(path, progress=True).checksum == "1220" + hashlib.sha256(b"x" * 1000).hexdigest()
    assert "sha256 blob.bin" in capsys.readouterr().err


def test_hash_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="missing.bin"):
        hash_file(tmp_path / "missing.bin")
    with pytest.raises(SourceError, match="not a regular file"):
        hash_file(tmp_path)


@pytest.mark.parametrize(
    ("checksum", "ok"),
    [
        ("1220" + "ab" * 32, True),
        ("ab" * 32, False),
        ("1220" + "AB" * 32, False),
        ("1220" + "ab" * 31, False),
        ("1340" + "ab" * 64, True),
        ("1114" + "ab" * 20, True),
        ("zz", False),
    ],
)
def test_is_multihash(checksum: str, ok: bool) -> None:
    assert is_multihash(checksum) is ok


# -- semver and keys -----------------------------------------------------------------------------------------


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


def test_hyperparameter_key() -> None:
    assert hyperparameter_key("learning rate") == "learning_rate"
    assert hyperparameter_key("model.lr") == "model.lr"


# -- description invariants ----------------------------------------------------------------------------------


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


# -- builder ---------------------------------------------------------------------------------------------------


def test_builder_declares_exactly_the_extensions_it_uses(tmp_path: Path, schema_dir: Path) -> None:
    item = build_item(description(tmp_path))
    assert item.stac_extensions == [
        MLM_SCHEMA_URI,
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
        "https://stac-extensions.github.io/processing/v1.1.0/schema.json",  # processing:software, always
    ]
    props = item.properties
    assert props["mlm:framework_version"] == "2.14.1+cu130"
    assert props["mlm:pretrained_source"] is None
    assert (
        props["bands"]
        == item.assets["model"].extra_fields["bands"]
        == [{"name": b} for b in ("B02", "B03", "B04", "B08")]
    )
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
    from mlm_export.description import Link

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


# -- overrides -------------------------------------------------------------------------------------------------


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


# -- writer ----------------------------------------------------------------------------------------------------


def test_save_item_relative_hrefs_and_atomic(tmp_path: Path, schema_dir: Path) -> None:
    item = build_item(description(tmp_path))
    out = tmp_path / "items"
    out.mkdir()
    path = save_item(item, out / "item.json")
    saved = json.loads(path.read_text())
    assert saved["assets"]["model"]["href"] == "../weights.safetensors"
    assert str(tmp_path) not in path.read_text()
    assert validate_item(path, schema_dir, allow_outside=[tmp_path]).valid  # the artifact is outside items/
    assert [p.name for p in out.iterdir()] == ["item.json"]
    with pytest.raises(OutputExistsError, match="already exists"):
        save_item(item, path)
    assert save_item(item, path, overwrite=True) == path


def test_save_item_errors(tmp_path: Path) -> None:
    item = build_item(description(tmp_path))
    assert save_item(item, tmp_path / "missing" / "item.json").is_file()  # parents are created, as pystac does
    with pytest.raises(OutputError, match="is a directory"):
        save_item(item, tmp_path)
    item.assets["model"].href = "https://user:secret@example.com/w.safetensors"
    with pytest.raises(ConfigurationError, match="credentials"):
        save_item(item, tmp_path / "item.json")
    assert not (tmp_path / "item.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_save_item_unwritable_directory(tmp_path: Path) -> None:
    item = build_item(description(tmp_path))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="Cannot write"):
            save_item(item, locked / "item.json")
    finally:
        locked.chmod(0o700)


def test_public_href_base_kept(tmp_path: Path, schema_dir: Path) -> None:
    from mlm_export.api import hash_artifacts

    described = description(tmp_path)
    described = hash_artifacts(
        described.replace(
            artifacts=tuple(a.__class__(**{**a.__dict__, "file_checksum": None}) for a in described.artifacts)
        ),
        href_base="https://models.example.com/v1/",
    )
    item = build_item(described)
    path = save_item(item, tmp_path / "item.json")
    saved = json.loads(path.read_text())
    assert saved["assets"]["model"]["href"] == "https://models.example.com/v1/weights.safetensors"
    assert validate_item(path, schema_dir).valid
