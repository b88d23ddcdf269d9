"""Freshness by folder mtimes (issue 25): ``freshness="folders"`` lists nothing while no folder changed, and still
sees added, removed, renamed and replaced files and in-place edits of candidates; the default sees every edit."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_index import _item

from mlm_export.errors import ConfigurationError
from mlm_export.stac import entries
from mlm_export.stac.index_folders import walk_key
from mlm_export.stac.search import search

OLD = 1_600_000_000_000_000_000  # an mtime far from "now": never racy


def _age(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.name.startswith(".mlm-index"):
            os.utime(path, ns=(OLD, OLD), follow_symlinks=False)


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders listed in full (every file stat'ed) by the searches of the test."""
    calls: list[Path] = []
    original = entries.folder_listing

    def counted(directory: Path, mtimes: Any = None) -> Any:
        calls.append(directory)
        return original(directory, mtimes)

    monkeypatch.setattr(entries, "folder_listing", counted)
    return calls


def _settled(folder: Path, listings: list[Path]) -> None:
    """Age the folder and search it until the index keeps its folders; the next search lists nothing."""
    for _ in range(3):
        _age(folder)
        search(folder, framework="none", freshness="folders")
    listings.clear()
    assert search(folder, framework="none", freshness="folders") == [] and listings == []


def _ids(folder: Path, freshness: str, **query: Any) -> list[str]:
    return [h.id for h in search(folder, freshness=freshness, **query)]


def _replace(path: Path, old: str, new: str) -> None:
    """Rewrite ``path`` as mlm-export's writers do: a temporary file renamed over it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(path.read_text().replace(old, new))
    os.replace(temporary, path)


@pytest.fixture
def folder(tmp_path: Path, listings: list[Path]) -> Path:
    folder = tmp_path / "items"
    for name, framework in (("a", "pytorch"), ("b", "pytorch"), ("c", "onnx")):
        _item(folder, name, **{"mlm:framework": framework})
    _item(folder / "sub", "d", **{"mlm:framework": "onnx"})
    _settled(folder, listings)
    return folder


@pytest.mark.parametrize("freshness", ["full", "folders"])
def test_added_removed_and_renamed_files_are_seen(folder: Path, freshness: str) -> None:
    assert _ids(folder, freshness, framework="onnx") == ["c", "d"]
    _item(folder / "sub", "e", **{"mlm:framework": "onnx"})
    assert _ids(folder, freshness, framework="onnx") == ["c", "d", "e"]
    (folder / "c.json").unlink()
    assert _ids(folder, freshness, framework="onnx") == ["d", "e"]
    os.rename(folder / "sub" / "d.json", folder / "sub" / "d2.json")
    assert [h.href for h in search(folder, framework="onnx", freshness=freshness)][0].endswith("d2.json")
    _item(folder / "new" / "deeper", "f", **{"mlm:framework": "onnx"})  # a new subfolder
    assert _ids(folder, freshness, framework="onnx") == ["d", "e", "f"]


@pytest.mark.parametrize("freshness", ["full", "folders"])
def test_a_file_replaced_by_rename_is_seen(folder: Path, freshness: str) -> None:
    _replace(folder / "a.json", '"pytorch"', '"onnx"')  # a non-candidate that now matches
    assert _ids(folder, freshness, framework="onnx") == ["a", "c", "d"]
    _replace(folder / "sub" / "d.json", '"onnx"', '"jax"')
    assert _ids(folder, freshness, framework="onnx") == ["a", "c"]


@pytest.mark.parametrize("freshness", ["full", "folders"])
def test_a_candidate_edited_in_place_is_indexed_again(folder: Path, freshness: str, listings: list[Path]) -> None:
    path = folder / "c.json"
    path.write_text(path.read_text().replace('"onnx"', '"jax" '))  # same size; only the mtime tells
    assert _ids(folder, freshness, framework="onnx") == ["d"]
    listings.clear()
    assert _ids(folder, freshness, framework="jax") == ["c"]  # its row was indexed again
    assert (listings == []) == (freshness == "folders")


def test_a_non_candidate_edited_in_place_is_seen_by_full_only(folder: Path, listings: list[Path]) -> None:
    """The documented blind spot of "folders", and why it is not the default."""
    path = folder / "a.json"
    path.write_text(path.read_text().replace('"pytorch"', '"onnx"   '))  # in place, as open('w') or an editor
    assert _ids(folder, "folders", framework="onnx") == ["c", "d"]  # missed: no folder changed
    assert listings == []
    assert _ids(folder, "full", framework="onnx") == ["a", "c", "d"]  # the default stats it
    assert _ids(folder, "folders", framework="onnx") == ["a", "c", "d"]  # and the index now knows


def test_folders_mode_lists_only_when_a_folder_changed(folder: Path, listings: list[Path]) -> None:
    assert _ids(folder, "folders", bands=["B02"]) == [] and listings == []
    (folder / "sub" / "notes.txt").write_text("x")  # not an Item, but the folder changed
    search(folder, framework="onnx", freshness="folders")
    assert listings == [folder]


def test_a_symlinked_file_keeps_the_full_listing(folder: Path, listings: list[Path]) -> None:
    (folder / "link.json").symlink_to(folder / "c.json")
    os.utime(folder, ns=(OLD + 10**9, OLD + 10**9))  # changed, and not racy: only the symlink stops "folders"
    for _ in range(3):
        search(folder, framework="onnx", freshness="folders")
    assert len(listings) == 3  # its target may change without any folder of this one changing


def test_walk_key_orders_as_the_listing(folder: Path) -> None:
    _item(folder / "a", "z")
    rels = [e.rel for e in entries.folder_listing(folder)]
    assert rels == sorted(rels, key=walk_key) == ["a.json", "b.json", "c.json", "a/z.json", "sub/d.json"]


def test_an_unknown_freshness_is_an_error(folder: Path) -> None:
    with pytest.raises(ConfigurationError, match="freshness"):
        search(folder, framework="onnx", freshness="never")


def test_the_cli_passes_freshness(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlm_export.cli import main

    assert main(["search", str(folder), "--framework", "onnx", "--freshness", "folders", "--json"]) == 0
    assert [hit["id"] for hit in json.loads(capsys.readouterr().out)] == ["c", "d"]
