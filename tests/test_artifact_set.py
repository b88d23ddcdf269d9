"""The files of one model, together: which assets, their layout by name, and the per-set directory of hard links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlm_export.artifact_set import SETS_DIR, in_place, layout, materialise, member_keys
from mlm_export.errors import ItemValidationError


def test_member_keys() -> None:
    onnx = {"model": {"mlm:artifact_type": "onnx", "roles": ["mlm:model"]},
            "model-external-data": {"roles": ["mlm:weights", "weights"]},
            "card": {"roles": ["metadata"]}}  # fmt: skip
    assert member_keys(onnx, "model") == ("model", ["model", "model-external-data"])
    sharded = {"a": {"roles": ["mlm:model", "mlm:weights"]}, "b": {"roles": ["mlm:model", "mlm:weights"]},
               "weights-index": {"roles": ["metadata"]}, "code": {"roles": ["mlm:source_code"]}}  # fmt: skip
    assert member_keys(sharded, "a") == ("weights-index", ["weights-index", "a", "b"])
    single = {"model": {"mlm:artifact_type": "torch.export.save", "roles": ["mlm:model"]},
              "w": {"roles": ["mlm:weights"]}}  # fmt: skip
    assert member_keys(single, "model") == ("model", ["model"])


def test_layout_names_files_relative_to_the_main_one() -> None:
    hrefs = {"m": "http://h/x/model.onnx", "d": "http://h/x/model.onnx.data", "e": "http://h/x/sub/w%20b.bin"}
    assert layout(hrefs, "m") == {"m": "model.onnx", "d": "model.onnx.data", "e": "sub/w b.bin"}
    assert layout({"m": "/a/b/m.onnx", "d": "/a/b/m.onnx.data"}, "m") == {"m": "m.onnx", "d": "m.onnx.data"}


@pytest.mark.parametrize(
    "data",
    ["http://h/y/model.onnx.data", "http://other/x/model.onnx.data", "http://h/x/..%2Fy.data", "s3://h/x/d",
     "http://h/x/a%2Fb", "http://h/model.onnx.data", "file:///x/model.onnx.data"],
)  # fmt: skip
def test_layout_refuses_files_outside_the_main_files_directory(data: str) -> None:
    with pytest.raises(ItemValidationError, match="does not lie in or below"):
        layout({"m": "http://h/x/model.onnx", "d": data}, "m")


def test_layout_refuses_one_name_twice() -> None:
    with pytest.raises(ItemValidationError, match="same file twice"):
        layout({"m": "http://h/x/m.onnx", "d": "http://h/x/./m.onnx"}, "m")


def _entries(cache: Path) -> dict[str, Path]:
    cache.mkdir()
    (cache / "1220aa").write_bytes(b"graph")
    (cache / "1220bb").write_bytes(b"weights")
    return {"m": cache / "1220aa", "d": cache / "1220bb"}


def test_materialise_links_verified_entries_under_their_names(tmp_path: Path) -> None:
    files = _entries(tmp_path / "cache")
    names, checksums = {"m": "model.onnx", "d": "model.onnx.data"}, {"m": "1220aa", "d": "1220bb"}
    assert not in_place(files, names, "m")
    paths = materialise(files, names, checksums, tmp_path / "cache")
    assert paths["m"].parent.parent == tmp_path / "cache" / SETS_DIR
    assert sorted(os.listdir(paths["m"].parent)) == ["model.onnx", "model.onnx.data"]
    assert paths["d"].read_bytes() == b"weights" and os.path.samefile(paths["d"], files["d"])
    assert in_place(paths, names, "m")
    assert materialise(files, names, checksums, tmp_path / "cache") == paths  # reused
    assert [p.name for p in (tmp_path / "cache" / SETS_DIR).iterdir()] == [paths["m"].parent.name]  # no leftovers


def test_a_set_whose_name_no_longer_is_the_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    files = _entries(tmp_path / "cache")
    names, checksums = {"m": "model.onnx", "d": "model.onnx.data"}, {"m": "1220aa", "d": "1220bb"}
    paths = materialise(files, names, checksums, tmp_path / "cache")
    paths["d"].unlink()
    paths["d"].write_bytes(b"swapped")  # another file under the name the loader opens
    again = materialise(files, names, checksums, tmp_path / "cache")
    assert again == paths and again["d"].read_bytes() == b"weights" and os.path.samefile(again["d"], files["d"])
    assert [p.name for p in (tmp_path / "cache" / SETS_DIR).iterdir()] == [paths["m"].parent.name]
