"""Offline validation: the official examples pass, and each broken variant fails at the expected place."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES_DIR
from factories import item_dict

from mlm_export import validate_item
from mlm_export.errors import ItemValidationError, SchemaNotFoundError
from mlm_export.stac.validate import ValidationReport

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))


def test_there_are_ten_examples() -> None:
    assert len(EXAMPLES) == 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_official_examples_are_valid(path: Path, schema_dir: Path) -> None:
    report = validate_item(path, schema_dir)
    assert report.valid, [str(p) for p in report.problems]
    assert report.schemas[0].startswith("https://schemas.stacspec.org/v1.0.0/")


def test_built_item_is_valid(tmp_path: Path, schema_dir: Path) -> None:
    report = validate_item(item_dict(tmp_path), schema_dir)
    assert report.valid, [str(p) for p in report.problems]
    assert "https://stac-extensions.github.io/mlm/v1.5.2/schema.json" in report.schemas


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split("/")

    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[keys[-1]]
        elif isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value

    return mutate


_DELETE = object()
INPUT = "properties/mlm:input/0"
OUTPUT = "properties/mlm:output/0"


def _rename_key(doc: dict[str, Any]) -> None:
    doc["properties"]["mlm:framwork"] = doc["properties"].pop("mlm:framework")


def _drop_model_role(doc: dict[str, Any]) -> None:
    asset = doc["assets"]["model"]
    asset["roles"] = ["weights"]
    del asset["mlm:artifact_type"]


def _artifact_type_elsewhere(doc: dict[str, Any]) -> None:
    doc["assets"]["readme"] = {"href": "https://example.com/README.md", "roles": ["metadata"],
                               "mlm:artifact_type": "torch.save"}  # fmt: skip


def _hyperparameters_on_asset(doc: dict[str, Any]) -> None:
    doc["assets"]["model"]["mlm:hyperparameters"] = {"lr": 0.1}


def _bands_without_dim(doc: dict[str, Any]) -> None:
    doc["properties"]["mlm:input"][0]["input"]["dim_order"] = ["batch", "channel", "height", "width"]


def _dim_without_bands(doc: dict[str, Any]) -> None:
    doc["properties"]["mlm:input"][0]["bands"] = []


def _drop_band_definitions(doc: dict[str, Any]) -> None:
    del doc["properties"]["bands"]
    del doc["assets"]["model"]["bands"]


# (id, mutation, expected JSON pointer, expected words in the message)
SCHEMA_CASES = [
    ("framework-version-not-semver", _set("properties/mlm:framework_version", "2.1"),
     "/properties/mlm:framework_version", "not a full semantic version"),
    ("accelerator-cpu", _set("properties/mlm:accelerator", "cpu"), "/properties/mlm:accelerator",
     "'cpu' is not one of ['amd64'"),
    ("misspelled-mlm-key", _rename_key, "/properties", "mlm:framwork"),
    ("checksum-uppercase", lambda d: d["assets"]["model"].update(
        {"file:checksum": d["assets"]["model"]["file:checksum"].upper()}),
     "/assets/model/file:checksum", "does not match"),
    ("missing-name", _set("properties/mlm:name", _DELETE), "/properties", "mlm:name"),
    ("name-too-short", _set("properties/mlm:name", "ab"), "/properties/mlm:name", "not a valid name"),
    ("unknown-task", _set("properties/mlm:tasks", ["classification", "dreaming"]), "/properties/mlm:tasks/1",
     "'dreaming'"),
    ("no-model-role", _drop_model_role, "/assets/model/roles", "must contain 'mlm:model'"),
    ("artifact-type-without-model-role", _artifact_type_elsewhere, "/assets/readme",
     "must not contain 'mlm:artifact_type'"),
    ("model-without-artifact-type", _set("assets/model/mlm:artifact_type", _DELETE), "/assets/model",
     "mlm:artifact_type"),
    ("empty-hyperparameters", _set("properties/mlm:hyperparameters", {}), "/properties/mlm:hyperparameters",
     "empty"),
    ("hyperparameter-key-with-space", _set("properties/mlm:hyperparameters", {"learning rate": 0.1}),
     "/properties/mlm:hyperparameters", "learning rate"),
    ("hyperparameters-on-asset", _hyperparameters_on_asset, "/assets/model", "mlm:hyperparameters"),
    ("bands-without-bands-dim", _bands_without_dim, f"/{INPUT}/input/dim_order", "bands"),
    ("bands-dim-without-bands", _dim_without_bands, f"/{INPUT}/input/dim_order", "must not contain 'bands'"),
    ("bands-without-definitions", _drop_band_definitions, "", "'bands' is a required property"),
    ("empty-value-scaling", _set(f"{INPUT}/value_scaling", []), f"/{INPUT}/value_scaling", "should be non-empty"),
    ("shape-below-minus-one", _set(f"{INPUT}/input/shape", [-2, 4, 64, 64]), f"/{INPUT}/input/shape/0", "-2"),
    ("dim-order-uppercase", _set(f"{INPUT}/input/dim_order", ["Batch", "bands", "height", "width"]),
     f"/{INPUT}/input/dim_order/0", "Batch"),
    ("data-type-bool", _set(f"{INPUT}/input/data_type", "bool"), f"/{INPUT}/input/data_type", "'bool'"),
    ("class-without-description", _set(f"{OUTPUT}/classification:classes/0/description", _DELETE),
     f"/{OUTPUT}/classification:classes/0", "description"),
    ("compile-method-null", _set("assets/model/mlm:compile_method", None), "/assets/model/mlm:compile_method",
     "None"),
    ("color-hint-with-hash", _set(f"{OUTPUT}/classification:classes/1/color_hint", "#00FF00"),
     f"/{OUTPUT}/classification:classes/1/color_hint", "does not match"),
    ("missing-output", _set("properties/mlm:output", _DELETE), "/properties", "mlm:output"),
]  # fmt: skip

SEMANTIC_CASES = [
    ("band-not-defined", _set(f"{INPUT}/bands/3", "B8A"), f"/{INPUT}/bands", "'B8A' is not defined"),
    ("band-count-vs-dim", _set(f"{INPUT}/input/shape/1", 5), f"/{INPUT}/bands", "'bands' dimension has size 5"),
    ("class-count-vs-dim", _set(f"{OUTPUT}/result/shape/1", 10), f"/{OUTPUT}/classification:classes",
     "'class' dimension has size 10"),
    ("dim-order-length", _set(f"{INPUT}/input/shape", [-1, 4, 64]), f"/{INPUT}/input/dim_order",
     "3 dimensions"),
    ("checksum-without-multihash-prefix", lambda d: d["assets"]["model"].update(
        {"file:checksum": d["assets"]["model"]["file:checksum"][4:]}),
     "/assets/model/file:checksum", "not a multihash"),
    ("local-file-missing", _set("assets/model/href", "/nonexistent/weights.safetensors"), "/assets/model/href",
     "does not exist"),
    ("local-file-size", _set("assets/model/file:size", 1), "/assets/model/file:size", "4096 bytes"),
    ("local-file-checksum", _set("assets/model/file:checksum", "1220" + "0" * 64), "/assets/model/file:checksum",
     "does not match"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "pointer", "words"), [c[1:] for c in SCHEMA_CASES + SEMANTIC_CASES],
                         ids=[c[0] for c in SCHEMA_CASES + SEMANTIC_CASES])  # fmt: skip
def test_broken_variant_fails_at_expected_path(
    tmp_path: Path, schema_dir: Path, mutate: Callable[[dict[str, Any]], None], pointer: str, words: str
) -> None:
    doc = item_dict(tmp_path)
    assert validate_item(doc, schema_dir).valid
    mutate(doc)
    report = validate_item(doc, schema_dir)
    assert not report.valid
    matching = [p for p in report.problems if p.path == pointer and words in p.message]
    assert matching, f"no problem at {pointer} mentioning {words!r}: {[str(p) for p in report.problems]}"


def test_at_least_twenty_broken_variants() -> None:
    assert len(SCHEMA_CASES) + len(SEMANTIC_CASES) >= 20


def test_report_serialises(tmp_path: Path, schema_dir: Path) -> None:
    doc = item_dict(tmp_path)
    doc["properties"]["mlm:accelerator"] = "cpu"
    report = validate_item(doc, schema_dir)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["valid"] is False
    assert any(p["path"] == "/properties/mlm:accelerator" for p in data["problems"])
    with pytest.raises(ItemValidationError, match="mlm:accelerator"):
        report.raise_for_problems()


def test_relative_href_resolved_from_file_location(tmp_path: Path, schema_dir: Path) -> None:
    doc = item_dict(tmp_path)
    doc["assets"]["model"]["href"] = "./weights.safetensors"
    path = tmp_path / "item.json"
    path.write_text(json.dumps(doc))
    assert validate_item(path, schema_dir).valid
    (tmp_path / "weights.safetensors").write_bytes(b"changed")
    report = validate_item(path, schema_dir)
    assert [p.path for p in report.problems] == ["/assets/model/file:size"]
    assert validate_item(path, schema_dir, check_files=False).valid


@pytest.mark.parametrize(
    ("content", "words"),
    [("{not json", "is not JSON"), ("[1, 2]", "not an object"), ("", "is not JSON")],
)
def test_unreadable_item_files(tmp_path: Path, schema_dir: Path, content: str, words: str) -> None:
    path = tmp_path / "item.json"
    path.write_text(content)
    with pytest.raises(ItemValidationError, match=words) as info:
        validate_item(path, schema_dir)
    assert "item.json" in str(info.value)


def test_missing_item_file(tmp_path: Path, schema_dir: Path) -> None:
    with pytest.raises(ItemValidationError, match="does not exist"):
        validate_item(tmp_path / "nope.json", schema_dir)


def test_unknown_stac_version_names_the_schema_url(tmp_path: Path, schema_dir: Path) -> None:
    doc = item_dict(tmp_path)
    doc["stac_version"] = "0.9.0"
    with pytest.raises(SchemaNotFoundError, match=r"https://schemas.stacspec.org/v0.9.0/item-spec"):
        validate_item(doc, schema_dir)


def test_bad_type_and_version_are_problems(schema_dir: Path) -> None:
    report = validate_item({"type": "Thing", "stac_version": "one"}, schema_dir)
    assert isinstance(report, ValidationReport)
    assert {p.path for p in report.problems} == {"/type", "/stac_version"}


def test_extension_missing_from_store_names_url(tmp_path: Path, schema_dir: Path) -> None:
    """An extension schema that is not available offline is reported (not fetched); the rest is still checked."""
    doc = item_dict(tmp_path)
    doc["stac_extensions"].append("https://stac-extensions.github.io/unknown/v9.9.9/schema.json")
    report = validate_item(doc, schema_dir)
    assert not report.valid
    position = len(doc["stac_extensions"]) - 1
    (problem,) = report.problems
    assert problem.path == f"/stac_extensions/{position}"
    assert "unknown/v9.9.9" in problem.message and "not checked" in problem.message


def test_schema_dir_from_environment(tmp_path: Path, schema_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLM_EXPORT_SCHEMA_DIR", str(schema_dir))
    assert validate_item(item_dict(tmp_path)).valid
    monkeypatch.setenv("MLM_EXPORT_SCHEMA_DIR", str(tmp_path / "missing"))
    with pytest.raises(SchemaNotFoundError, match="MLM_EXPORT_SCHEMA_DIR"):
        validate_item(item_dict(tmp_path))


def test_cache_download_offline_names_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no directory configured, a schema neither bundled nor cached is downloaded; offline the error names it."""
    monkeypatch.delenv("MLM_EXPORT_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    doc = {"type": "Feature", "stac_version": "1.0.0-rc.1", "stac_extensions": []}  # not bundled
    with pytest.raises(SchemaNotFoundError, match="https://schemas.stacspec.org/v1.0.0-rc.1/item-spec") as info:
        validate_item(doc)
    assert "could not be downloaded" in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_cache_serves_stored_schemas(tmp_path: Path, schema_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.delenv("MLM_EXPORT_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shutil.copytree(schema_dir, tmp_path / "cache" / "mlm-export" / "schemas")
    assert validate_item(item_dict(tmp_path)).valid
    document = item_dict(tmp_path)  # raster v2.0.0 is not bundled: it comes from the cache
    document["stac_extensions"].append("https://stac-extensions.github.io/raster/v2.0.0/schema.json")
    report = validate_item(document)
    assert "https://stac-extensions.github.io/raster/v2.0.0/schema.json" in report.schemas


def test_a_local_link_to_a_missing_file_is_a_problem(tmp_path: Path, schema_dir: Path) -> None:
    """``collection`` -> ../collection.json that is not there: a problem at /links/N; once the file exists, valid.

    Existence only is looked at (never opened); in-memory dicts, URLs and ``self`` are not checked.
    """
    runs = tmp_path / "runs"
    runs.mkdir()
    document = item_dict(tmp_path)
    document["assets"]["model"]["href"] = "../weights.safetensors"
    document["collection"] = "models"
    document["links"] = [
        {"rel": "self", "href": "/nowhere/item.json"},
        {"rel": "cite-as", "href": "https://doi.org/10.0/x"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
    ]
    path = runs / "item.json"
    path.write_text(json.dumps(document))
    report = validate_item(path, schema_dir, allow_outside=[tmp_path])
    assert [(p.path, p.source) for p in report.problems] == [("/links/2/href", "semantic")]
    assert "'../collection.json', which does not exist" in report.problems[0].message
    assert validate_item(document, schema_dir).valid  # a dict without a location: nothing to resolve against
    (tmp_path / "collection.json").write_text("{}")
    assert validate_item(path, schema_dir, allow_outside=[tmp_path]).valid
