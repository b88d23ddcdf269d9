"""stac/writer.py: save_item writes relative hrefs atomically, keeps public href bases, and reports bad places."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factories import description

from mlm_export import save_item, validate_item
from mlm_export.description import Link
from mlm_export.errors import ConfigurationError, OutputError, OutputExistsError
from mlm_export.stac.builder import build_item


def test_save_item_relative_hrefs_and_atomic(tmp_path: Path, schema_dir: Path) -> None:
    item = build_item(description(tmp_path))
    out = tmp_path / "items"
    out.mkdir()
    path = save_item(item, out / "item.json", allow_outside=[tmp_path])
    saved = json.loads(path.read_text())
    assert saved["assets"]["model"]["href"] == "../weights.safetensors"
    assert str(tmp_path) not in path.read_text()
    assert validate_item(path, schema_dir, allow_outside=[tmp_path]).valid  # the artifact is outside items/
    assert [p.name for p in out.iterdir()] == ["item.json"]
    with pytest.raises(OutputExistsError, match="already exists"):
        save_item(item, path, allow_outside=[tmp_path])
    assert save_item(item, path, overwrite=True, allow_outside=[tmp_path]) == path


def test_save_item_errors(tmp_path: Path) -> None:
    item = build_item(description(tmp_path))
    assert save_item(item, tmp_path / "missing" / "item.json", allow_outside=[tmp_path]).is_file()  # parents made
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


def test_save_item_refuses_an_artifact_outside_the_items_directory(tmp_path: Path, schema_dir: Path) -> None:
    """An Item validate would call "points outside" is not written; the hint names the three fixes."""
    item = build_item(description(tmp_path))  # the weights are tmp_path/weights.safetensors
    with pytest.raises(OutputError, match=r"'model' \('\.\./weights\.safetensors'\) lies outside") as info:
        save_item(item, tmp_path / "items" / "item.json")
    assert "--allow-outside" in info.value.hint and "artifact_dir=" in info.value.hint
    assert str(tmp_path) in info.value.hint  # beside the artifact: its directory
    assert not (tmp_path / "items").exists()  # nothing written, not even the directory
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "link.safetensors").symlink_to(tmp_path / "weights.safetensors")
    item.assets["model"].href = str(tmp_path / "items" / "link.safetensors")  # a symlink out is outside too
    with pytest.raises(OutputError, match="lies outside"):
        save_item(item, tmp_path / "items" / "item.json")
    with pytest.raises(OutputError, match="lies outside"):
        save_item(item, tmp_path / "items" / "item.json", allow_outside=[tmp_path / "elsewhere"])
    path = save_item(item, tmp_path / "items" / "item.json", allow_outside=[tmp_path])
    assert validate_item(path, schema_dir, allow_outside=[tmp_path]).valid
    assert not validate_item(path, schema_dir).valid  # the same rule: without allow_outside it points outside


def test_save_item_links_only_a_collection_that_exists(
    tmp_path: Path, schema_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """collection= links ../collection.json only when it is there; else neither link nor field, with a warning."""
    item = build_item(description(tmp_path), collection="models")
    with caplog.at_level("WARNING", logger="mlm_export"):
        path = save_item(item, tmp_path / "runs" / "item.json", allow_outside=[tmp_path])
    saved = json.loads(path.read_text())
    assert "collection" not in saved and not [x for x in saved["links"] if x["rel"] == "collection"]
    assert "'models'" in caplog.text and "'../collection.json'" in caplog.text and "does not exist" in caplog.text
    assert validate_item(path, schema_dir, allow_outside=[tmp_path]).valid
    (tmp_path / "collection.json").write_text("{}")
    path = save_item(item, tmp_path / "runs" / "item.json", allow_outside=[tmp_path], overwrite=True)
    saved = json.loads(path.read_text())
    assert saved["collection"] == "models"
    assert [x["href"] for x in saved["links"] if x["rel"] == "collection"] == ["../collection.json"]
    assert validate_item(path, schema_dir, allow_outside=[tmp_path]).valid
    url = build_item(description(tmp_path, links=(Link("collection", "https://stac.example.com/c/m"),)),
                     collection="models")  # fmt: skip
    saved = json.loads(save_item(url, tmp_path / "url" / "item.json", allow_outside=[tmp_path]).read_text())
    assert saved["collection"] == "models"  # a URL given is linked as it is (and alone)
    assert [x["href"] for x in saved["links"] if x["rel"] == "collection"] == ["https://stac.example.com/c/m"]
