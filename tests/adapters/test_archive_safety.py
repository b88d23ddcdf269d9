"""Issue 11.1 and 11.8: no pickled code runs on any PyTorch loader path without trust_pickle, and zip bombs are
refused before anything is inflated.

Every crafted file carries a canary: a pickle whose unpickling ``exec``s code that writes a marker file. Each test
first proves that the canary is live (the plain torch loader, or ``trust_pickle=True``, does run it), then that
mlm-export refuses the file on that path and the marker never appears.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch_models as tm

from mlm_export import export_item, inspect_model
from mlm_export.adapters.archive_safety import MAX_COMPRESSION_RATIO, check_torch_file
from mlm_export.errors import ArtifactLoadError, MLMExportError, UntrustedPickleError
from mlm_export.hashing import hash_file
from mlm_export.loading import check_item, load_model


class Canary:
    """Unpickling this runs ``exec`` (arbitrary code, as a malicious pickle would): it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _torch_save_bytes(obj: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _rewrite_zip(source: Path, target: Path, replace: Callable[[str, bytes], bytes]) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, replace(info.filename, src.read(info.filename)))
    return target


def _exported(tmp: Path) -> Path:
    path = tmp / "clean.pt2"
    torch.export.save(torch.export.export(tm.LinearNet().eval(), (torch.randn(1, 3),)), path)
    return path


def pt2_sample_inputs(tmp: Path, marker: Path) -> Path:
    evil = _torch_save_bytes(Canary(marker))
    return _rewrite_zip(_exported(tmp), tmp / "evil.pt2", lambda n, d: evil if "/sample_inputs/" in n else d)


def pt2_renamed_pt(tmp: Path, marker: Path) -> Path:
    return pt2_sample_inputs(tmp, marker).rename(tmp / "evil_renamed.pt")


def pt2_pickled_weight(tmp: Path, marker: Path) -> Path:
    """A weights config that says weight_0 is pickled (torch.load(weights_only=False) in torch.export.load)."""

    def replace(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            for meta in config["config"].values():
                if meta["path_name"] == "weight_0":
                    meta["use_pickle"] = True
            return json.dumps(config).encode()
        return _torch_save_bytes(Canary(marker)) if name.endswith("/weight_0") else data

    return _rewrite_zip(_exported(tmp), tmp / "evil_weight.pt2", replace)


def torchscript_data_pkl(tmp: Path, marker: Path) -> Path:
    import pickle

    clean = tmp / "clean_script.pt"
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.trace(tm.LinearNet().eval(), torch.randn(1, 3)), clean)
    evil = pickle.dumps(Canary(marker), protocol=2)
    return _rewrite_zip(clean, tmp / "evil_script.pt", lambda n, d: evil if n.endswith("/data.pkl") else d)


def pickled_pt(tmp: Path, marker: Path, suffix: str = ".pt") -> Path:
    path = tmp / f"evil{suffix}"
    torch.save({"state_dict": tm.LinearNet().state_dict(), "extra": Canary(marker)}, path)
    return path


def pickled_pth(tmp: Path, marker: Path) -> Path:
    return pickled_pt(tmp, marker, ".pth")


def lightning_ckpt(tmp: Path, marker: Path) -> Path:
    path = tmp / "evil.ckpt"
    checkpoint = {
        "pytorch-lightning_version": "2.6.6",
        "state_dict": tm.LinearNet().state_dict(),
        "hyper_parameters": {"lr": 0.1, "callback": Canary(marker)},
    }
    torch.save(checkpoint, path)
    return path


def legacy_pickle(tmp: Path, marker: Path) -> Path:
    path = tmp / "evil_legacy.pt"
    path.write_bytes(_torch_save_bytes(Canary(marker), _use_new_zipfile_serialization=False))
    return path


def pickle_named_safetensors(tmp: Path, marker: Path) -> Path:
    return pickled_pt(tmp, marker).rename(tmp / "evil.safetensors")


def pickle_named_onnx(tmp: Path, marker: Path) -> Path:
    return pickled_pt(tmp, marker).rename(tmp / "evil.onnx")


#: (crafted file, its mlm:artifact_type, error without trust_pickle)
CRAFTED: dict[str, tuple[Callable[[Path, Path], Path], str, type[MLMExportError]]] = {
    "pt": (pickled_pt, "torch.save", UntrustedPickleError),
    "pth": (pickled_pth, "torch.save", UntrustedPickleError),
    "ckpt-lightning": (lightning_ckpt, "torch.save", UntrustedPickleError),
    "legacy-pickle": (legacy_pickle, "torch.save", UntrustedPickleError),
    "torchscript": (torchscript_data_pkl, "torch.jit.save", ArtifactLoadError),
    "pt2-sample-inputs": (pt2_sample_inputs, "torch.export.save", UntrustedPickleError),
    "pt2-renamed-pt": (pt2_renamed_pt, "torch.export.save", UntrustedPickleError),
    "pt2-pickled-weight": (pt2_pickled_weight, "torch.export.save", UntrustedPickleError),
    "safetensors-named-pickle": (pickle_named_safetensors, "safetensors.torch.save_file", ArtifactLoadError),
    "onnx-named-pickle": (pickle_named_onnx, "onnx", ArtifactLoadError),
}


def _item_for(path: Path, artifact_type: str) -> Path:
    digest = hash_file(path)
    document = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/mlm/v1.5.2/schema.json"],
        "id": "evil",
        "properties": {
            "datetime": "2024-01-01T00:00:00Z",
            "mlm:input": [
                {
                    "name": "x",
                    "bands": [],
                    "input": {"shape": [-1, 3], "dim_order": ["batch", "channel"], "data_type": "float32"},
                }  # fmt: skip
            ],
            "mlm:output": [
                {"name": "y", "result": {"shape": [-1, 2], "dim_order": ["batch", "class"], "data_type": "float32"}}
            ],
        },
        "geometry": None,
        "links": [],
        "assets": {
            "model": {
                "href": f"./{path.name}",
                "roles": ["mlm:model"],
                "mlm:artifact_type": artifact_type,
                "file:size": digest.size,
                "file:checksum": digest.checksum,
            }
        },
    }
    item_path = path.parent / "item.json"
    item_path.write_text(json.dumps(document), encoding="utf-8")
    return item_path


ENTRY_POINTS: dict[str, Callable[[Path, str, Path], Any]] = {
    "inspect": lambda path, _type, tmp: inspect_model(path),
    "export": lambda path, _type, tmp: export_item(path, artifact_dir=tmp / "art", input_shape=(1, 3)),
    "load_model": lambda path, kind, tmp: load_model(_item_for(path, kind), model_class=tm.LinearNet),
    "check_item": lambda path, kind, tmp: check_item(_item_for(path, kind), model_class=tm.LinearNet),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_canary_never_runs_without_trust_pickle(tmp_path: Path, case: str, entry: str) -> None:
    marker = tmp_path / "canary-ran.txt"
    build, artifact_type, error = CRAFTED[case]
    path = build(tmp_path, marker)
    with pytest.raises(error) as info:
        ENTRY_POINTS[entry](path, artifact_type, tmp_path)
    assert path.name in str(info.value)
    if error is UntrustedPickleError:
        assert "trust_pickle" in (info.value.hint or "")
    assert not marker.exists(), f"pickled code ran on the {case} / {entry} path"


@pytest.mark.parametrize("case", ["pt", "ckpt-lightning", "legacy-pickle", "pt2-sample-inputs", "pt2-renamed-pt"])
def test_canaries_are_live(tmp_path: Path, case: str) -> None:
    """The same files DO run code when unpickled unrestricted: the refusals above are not vacuous."""
    marker = tmp_path / "canary-ran.txt"
    path = CRAFTED[case][0](tmp_path, marker)
    if case.startswith("pt2"):
        with pytest.raises(Exception):  # noqa: B017 - the canary returns None, torch.export then fails
            torch.export.load(str(path))
    else:
        torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


def test_trust_pickle_lets_torch_export_load_run(tmp_path: Path) -> None:
    """With trust_pickle the archive check steps aside (the caller vouched for the file)."""
    marker = tmp_path / "canary-ran.txt"
    path = pt2_sample_inputs(tmp_path, marker)
    check_torch_file(path, trust_pickle=True)
    assert not marker.exists()  # the check itself never unpickles unrestricted


def test_clean_files_pass(tmp_path: Path) -> None:
    clean = _exported(tmp_path)
    check_torch_file(clean, trust_pickle=False)
    description = inspect_model(clean)
    assert description.total_parameters == 3 * 2 + 2
    state = tmp_path / "weights.pt"
    torch.save(tm.LinearNet().state_dict(), state)
    check_torch_file(state, trust_pickle=False)


def _zip_bomb(path: Path, inflated: int) -> Path:
    """A torch.save-shaped zip whose data.pkl is deflated zeros: a few hundred KB that inflate to ``inflated``."""
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("bomb/version", "3\n", compress_type=zipfile.ZIP_STORED)
        with archive.open("bomb/data.pkl", "w", force_zip64=True) as stream:
            for _ in range(inflated // len(chunk)):
                stream.write(chunk)
    return path


def test_zip_bomb_refused_before_inflating(tmp_path: Path) -> None:
    path = _zip_bomb(tmp_path / "bomb.pt", 256 << 20)
    info = zipfile.ZipFile(path).getinfo("bomb/data.pkl")
    assert info.file_size > MAX_COMPRESSION_RATIO * info.compress_size  # it really is a bomb
    with pytest.raises(ArtifactLoadError) as error:
        inspect_model(path)
    assert "zip bomb" in str(error.value)
    assert "bomb/data.pkl" in str(error.value)
    with pytest.raises(ArtifactLoadError):
        check_torch_file(path, trust_pickle=True)  # trust_pickle does not waive the size checks


def _central_header(data: bytes, name: str) -> int:
    """Offset of the central-directory record of entry ``name``."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + length] == name.encode():
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(name)


def test_stored_entry_with_lying_size_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(tm.LinearNet().state_dict(), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    at = _central_header(bytes(data), info.filename)
    data[at + 24 : at + 28] = (info.file_size * 1000).to_bytes(4, "little")  # uncompressed size
    bad = tmp_path / "lying.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactLoadError) as error:
        inspect_model(bad)
    assert "data.pkl" in str(error.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_and_directory_are_not_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactLoadError, match="not a regular file"):
        check_torch_file(fifo, trust_pickle=False)
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    with pytest.raises(ArtifactLoadError, match="not a regular file"):
        check_torch_file(folder, trust_pickle=False)
    shutil.rmtree(folder)


def _with_entries(source: Path, target: Path, extra: dict[str, bytes]) -> Path:
    shutil.copy(source, target)
    with zipfile.ZipFile(target, "a") as archive:
        for name, data in extra.items():
            archive.writestr(name, data)
    return target


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("clean/data/aotinductor/model/model.so", "AOTInductor"),  # torch.export.load would dlopen it
        ("serialized_example_inputs.pt", "serialized_example_inputs.pt"),  # the pre-2.8 layout it falls back to
        ("other/data/sample_inputs/model.pt", "other/data/sample_inputs/model.pt"),  # a second archive folder
    ],
)
def test_every_entry_torch_export_could_execute_is_checked(tmp_path: Path, entry: str, words: str) -> None:
    marker = tmp_path / "canary-ran.txt"
    path = _with_entries(_exported(tmp_path), tmp_path / "crafted.pt2", {entry: _torch_save_bytes(Canary(marker))})
    with pytest.raises(UntrustedPickleError, match=words):
        inspect_model(path)
    assert not marker.exists()
