"""Every file written respects the umask (artifacts were 0600), and save_item creates parent directories."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch_models as tm

from mlm_export import export_item, save_item
from mlm_export.errors import OutputError

EXTENT = {"bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}


@pytest.fixture(params=[0o022, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.mark.parametrize("fmt", ["safetensors", "torch.save", "torchscript"])
def test_artifacts_and_items_get_the_umask_mode(tmp_path: Path, umask: int, fmt: str) -> None:
    item = export_item(tm.TinyConvNet(), artifact_dir=tmp_path / "art", artifact_format=fmt, **EXTENT)
    artifact = Path(item.assets["model"].href)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(artifact.stat().st_mode) == expected
    path = save_item(item, tmp_path / "item.json")
    assert stat.S_IMODE(path.stat().st_mode) == expected


def test_save_item_creates_missing_parents(tmp_path: Path) -> None:
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "art", **EXTENT)
    path = save_item(item, tmp_path / "a" / "b" / "item.json", allow_outside=[tmp_path])  # weights in ../../art
    assert path.is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a parent is a file"):
        save_item(item, tmp_path / "file" / "item.json", allow_outside=[tmp_path])
