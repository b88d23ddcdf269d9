"""stac/writer.py: save_item writes relative hrefs atomically, keeps public href bases, and reports bad places."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factories import description

from mlm_export import save_item, validate_item
from mlm_export.errors import ConfigurationError, OutputError, OutputExistsError
from mlm_export.stac.builder import build_item


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
