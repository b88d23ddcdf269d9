"""Issue 11.10-11.12 and 11.15: hostile Item JSON is reported with a JSON pointer (exit 1), never a crash.

Malformed structures, NaN/Infinity, duplicate keys, oversized and deeply nested documents, 10,000 classes, and
hrefs with spaces and non-ASCII characters.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from factories import item_dict

from mlm_export import save_item, validate_item
from mlm_export.errors import ConfigurationError, ItemValidationError
from mlm_export.stac.io import (
    decode_href,
    encode_href,
    parse_json,
    read_item_document,
    resolve_asset_href,
    structure_problems,
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlm_export", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _saved(tmp: Path, doc: dict[str, Any]) -> Path:
    path = tmp / "item.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _valid_file(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp / "item.json"
    save_item(item_dict(tmp), path)
    return path, json.loads(path.read_text(encoding="utf-8"))


def _set(pointer: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = pointer.strip("/").split("/")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        elif value is ...:
            del target[last]
        else:
            target[last] = value

    return change


#: name -> (change, JSON pointer the problem is reported at)
MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "assets-as-list": (_set("/assets", [{"href": "x"}]), "/assets"),
    "properties-as-list": (_set("/properties", [1, 2]), "/properties"),
    "links-as-int": (_set("/links", 7), "/links"),
    "asset-without-href": (_set("/assets/model/href", ...), "/assets/model/href"),
    "href-not-string": (_set("/assets/model/href", 12), "/assets/model/href"),
    "roles-as-int": (_set("/assets/model/roles", 3), "/assets/model/roles"),
    "short-dim-order": (
        _set("/properties/mlm:input/0/input/dim_order", ["batch"]),
        "/properties/mlm:input/0/input/dim_order",
    ),  # fmt: skip
    "input-without-input": (_set("/properties/mlm:input/0/input", ...), "/properties/mlm:input/0/input"),
    "string-in-shape": (_set("/properties/mlm:input/0/input/shape/1", "four"), "/properties/mlm:input/0/input/shape"),
    "file-size-as-string": (_set("/assets/model/file:size", "4096"), "/assets/model/file:size"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_item_is_reported_not_crashed(tmp_path: Path, schema_dir: Path, case: str) -> None:
    change, pointer = MALFORMED[case]
    _, doc = _valid_file(tmp_path)
    change(doc)
    path = _saved(tmp_path, doc)

    report = validate_item(path, schema_dir)
    assert not report.valid
    assert pointer in {p.path for p in report.problems}

    validated = _cli("validate", str(path))
    assert validated.returncode == 1, validated.stderr
    assert pointer in validated.stdout
    checked = _cli("check", str(path))
    assert checked.returncode == 1, checked.stderr
    assert pointer in checked.stderr and "Traceback" not in checked.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"type": "Feature", "id": "a", "id": "b"}', "duplicate key 'id'"),
        ('{"type": "Feature", "bbox": [NaN, 0, 1, 1]}', "NaN"),
        ('{"type": "Feature", "bbox": [0, 0, Infinity, 1]}', "Infinity"),
        ('{"type": "Feature", "bbox": [-Infinity, 0, 1, 1]}', "-Infinity"),
    ],
)
def test_nan_and_duplicate_keys_rejected(tmp_path: Path, schema_dir: Path, text: str, words: str) -> None:
    assert json.loads(text)  # the standard library accepts all of these
    path = tmp_path / "item.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ItemValidationError, match=words):
        validate_item(path, schema_dir)
    result = _cli("validate", str(path))
    assert result.returncode == 1 and words in result.stderr


def test_nan_in_a_dict_item_is_a_problem(tmp_path: Path, schema_dir: Path) -> None:
    doc = item_dict(tmp_path)
    doc["bbox"][0] = float("nan")
    doc["geometry"]["coordinates"][0][0][1] = float("inf")
    report = validate_item(doc, schema_dir)
    assert {"/bbox/0", "/geometry/coordinates/0/0/1"} <= {p.path for p in report.problems}


def test_size_cap_and_deep_nesting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _valid_file(tmp_path)
    size = path.stat().st_size
    with pytest.raises(ItemValidationError, match=f"larger than the {size - 1}-byte"):
        validate_item(path, max_bytes=size - 1)
    monkeypatch.setenv("MLM_EXPORT_MAX_JSON_BYTES", str(size - 1))
    with pytest.raises(ItemValidationError, match="MLM_EXPORT_MAX_JSON_BYTES"):
        read_item_document(path)
    monkeypatch.delenv("MLM_EXPORT_MAX_JSON_BYTES")
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + "[" * 200_000 + "]" * 200_000 + "}", encoding="utf-8")
    with pytest.raises(ItemValidationError, match="nested too deeply"):
        validate_item(deep)


def test_fifo_item_is_not_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "item.json"
    os.mkfifo(fifo)
    with pytest.raises(ItemValidationError, match="not a regular file"):
        validate_item(fifo)  # would block forever if opened


def _classes(count: int) -> list[dict[str, Any]]:
    return [{"value": index, "name": f"class_{index}", "description": f"Class {index}"} for index in range(count)]


def test_ten_thousand_classes_still_checked_for_uniqueness(tmp_path: Path, schema_dir: Path) -> None:
    doc = item_dict(tmp_path)
    output = doc["properties"]["mlm:output"][0]
    output["result"]["shape"] = [-1, 10_000]
    output["classification:classes"] = _classes(10_000)
    assert validate_item(doc, schema_dir).valid
    duplicated = copy.deepcopy(doc)
    classes = duplicated["properties"]["mlm:output"][0]["classification:classes"]
    classes[-1] = {
        "name": "class_0",
        "value": 0.0,
        "description": "Class 0",
    }  # equal to classes[0] under JSON equality (0 == 0.0)
    report = validate_item(duplicated, schema_dir)
    assert any("non-unique" in p.message for p in report.problems)


@pytest.mark.parametrize("name", ["my model.safetensors", "modèle 🌍#1.safetensors", "100%.safetensors"])
def test_hrefs_percent_encoded_and_decoded(tmp_path: Path, schema_dir: Path, name: str) -> None:
    doc = item_dict(tmp_path)
    weights = tmp_path / "weights.safetensors"
    weights.rename(tmp_path / name)
    doc["assets"]["model"]["href"] = str(tmp_path / name)
    path = tmp_path / "item.json"
    save_item(doc, path)
    href = json.loads(path.read_text(encoding="utf-8"))["assets"]["model"]["href"]
    assert href.isascii() and " " not in href and "#" not in href
    assert decode_href(href) == f"./{name}"
    assert validate_item(path, schema_dir).valid


def test_encode_decode_round_trip() -> None:
    for raw in ["a b/c.pt", "é/ü.pt", "x%20y.pt", "q?#.pt", "../up.pt", "epoch=0:x.ckpt"]:
        assert decode_href(encode_href(raw)) == raw
    assert encode_href("a b.pt") == "a%20b.pt"
    assert encode_href("epoch=0-step=2.ckpt") == "epoch=0-step=2.ckpt"
    assert decode_href("file:///tmp/a%20b.pt") == "/tmp/a b.pt"


def test_structure_of_valid_item_is_clean(tmp_path: Path) -> None:
    assert structure_problems(item_dict(tmp_path)) == []
    assert parse_json('{"a": [1, 2.5]}', "x") == {"a": [1, 2.5]}


def test_href_base_file_names_are_encoded(tmp_path: Path) -> None:
    from dataclasses import replace

    from factories import description

    from mlm_export.api import hash_artifacts

    described = description(tmp_path)
    artifact = described.artifacts[0]
    moved = Path(artifact.path).rename(tmp_path / "my model é.safetensors")
    renamed = described.replace(artifacts=(replace(artifact, path=str(moved)),))
    published = hash_artifacts(renamed, href_base="https://example.com/models/")
    assert published.artifacts[0].href == "https://example.com/models/my%20model%20%C3%A9.safetensors"


def test_resolve_asset_href_classifies_and_confines(tmp_path: Path) -> None:
    """The one href resolver of loading and placement: local / file:// / URL / registry, confined to the Item."""
    item_dir = tmp_path / "item"
    item_dir.mkdir()
    (item_dir / "model file.pt").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.pt").write_bytes(b"y")
    (item_dir / "link.pt").symlink_to(elsewhere / "other.pt")
    inside = Path(os.path.realpath(item_dir / "model file.pt"))

    for href in ("./model%20file.pt", "model%20file.pt", (item_dir / "model file.pt").as_uri()):
        resolved = resolve_asset_href(href, item_dir, where="Asset 'model'")
        assert (resolved.kind, resolved.path) == ("local", inside)
    assert resolve_asset_href("https://example.org/m.pt", item_dir, where="a").kind == "remote"
    assert resolve_asset_href("s3://bucket/m.pt", None, where="a").kind == "remote"
    assert resolve_asset_href("oci://registry.example.org/model:1", item_dir, where="a").kind == "registry"

    for href in ("../elsewhere/other.pt", "./link.pt", str(elsewhere / "other.pt")):
        with pytest.raises(ItemValidationError, match="points outside") as info:
            resolve_asset_href(href, item_dir, where="Asset 'model'", outside_hint="do this")
        assert info.value.message.startswith("Asset 'model': ")
        assert repr(href) in info.value.message
        assert info.value.hint == "do this"
        allowed = resolve_asset_href(href, item_dir, where="a", allow_outside=[elsewhere])
        assert (allowed.kind, allowed.path) == ("local", Path(os.path.realpath(elsewhere / "other.pt")))

    with pytest.raises(ConfigurationError, match="location is unknown") as unresolved:
        resolve_asset_href("./model.pt", None, where="Asset 'model'")
    assert "'./model.pt'" in unresolved.value.message
    # An Item without a location of its own (a dict built in memory): absolute paths are taken as they are.
    free = resolve_asset_href(str(elsewhere / "other.pt"), None, where="a", confine=False)
    assert free.kind == "local"
    with pytest.raises(ItemValidationError, match="allowed directories"):
        resolve_asset_href(str(elsewhere / "other.pt"), None, where="a", confine=True)
