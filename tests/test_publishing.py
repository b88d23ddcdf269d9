"""The export write path: staged, validated, published without replacing; nothing left behind by failures or kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch_models as tm

import mlm_export.api
from mlm_export import export_item, inspect_model, load_model, save_item, validate_item
from mlm_export.errors import ConfigurationError, OutputError
from mlm_export.files import TEMP_MARK

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = {"input_shape": [-1, 6]}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if TEMP_MARK in p.name)


@pytest.mark.parametrize("fmt", [None, "onnx", "torchscript"])
def test_inspect_model_writes_nothing(fmt: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    described = inspect_model(tm.TinyMLP(), artifact_format=fmt, artifact_dir=tmp_path / "out", **EXAMPLE)
    assert list(tmp_path.iterdir()) == []  # neither out/ nor the default ./artifacts
    model = described.artifacts[0]
    assert Path(model.path).parent == tmp_path / "out" and model.file_checksum is None
    assert described.inputs[0].shape == (-1, 6)


def test_inspect_model_refuses_unknown_options() -> None:
    with pytest.raises(ConfigurationError, match="frobnicate"):
        inspect_model(tm.TinyMLP(), frobnicate=True)


def test_failed_overwrite_keeps_the_published_artifact(tmp_path: Path, schema_dir: Path) -> None:
    first = export_item(tm.TinyMLP(), artifact_dir=tmp_path, **EXAMPLE)
    item_path = save_item(first, tmp_path / "first.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ConfigurationError, match="classes"):
        export_item(tm.TinyMLP(), artifact_dir=tmp_path, overwrite=True, tasks=["classification"],
                    classes=["a", "b", "c", "d", "e"], **EXAMPLE)  # fmt: skip
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert validate_item(item_path, schema_dir).valid  # checks the file's size and checksum


def test_overwrite_replaces_only_after_validation(tmp_path: Path) -> None:
    export_item(tm.TinyMLP(), artifact_dir=tmp_path, **EXAMPLE)
    torch.manual_seed(1)
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path, overwrite=True, **EXAMPLE)
    path = Path(item.assets["model"].href)
    assert path.name == "TinyMLP.safetensors" and path.stat().st_nlink == 1
    assert _leftovers(tmp_path) == []


def test_name_taken_meanwhile_gets_a_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent export publishing the same name between our check and our publication never gets replaced."""
    original = mlm_export.api.write_staged

    def concurrent_writer(measured, staging):
        staged = original(measured, staging)
        (tmp_path / "TinyMLP.safetensors").write_bytes(b"someone else's artifact")
        return staged

    monkeypatch.setattr(mlm_export.api, "write_staged", concurrent_writer)
    with pytest.warns(RuntimeWarning, match="published as 'TinyMLP-2.safetensors'"):
        item = export_item(tm.TinyMLP(), artifact_dir=tmp_path, **EXAMPLE)
    assert (tmp_path / "TinyMLP.safetensors").read_bytes() == b"someone else's artifact"
    assert Path(item.assets["model"].href) == tmp_path / "TinyMLP-2.safetensors"
    assert "description" not in item.properties  # the rename is a warning (above), not Item content
    save_item(item, tmp_path / "item.json")
    assert validate_item(tmp_path / "item.json").valid


def test_tied_weights_are_stored_once(tmp_path: Path) -> None:
    model = tm.TiedEmbeddingLM(vocab=1000, dim=16)
    item = export_item(model, artifact_dir=tmp_path, input_shape=[-1, 12], input_dtype="int64")
    size = Path(item.assets["model"].href).stat().st_size
    unique_bytes = (1000 * 16 + 16 * 16 + 16) * 4  # embedding (= output weight), proj weight and bias, float32
    assert unique_bytes <= size < unique_bytes + 1000 * 16 * 4 // 2  # a second copy would add 64,000 bytes
    path = save_item(item, tmp_path / "item.json")
    loaded = load_model(path, model_class=tm.TiedEmbeddingLM, model_kwargs={"vocab": 1000, "dim": 16})
    tokens = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model.eval()(tokens))
    assert loaded.out.weight.data_ptr() == loaded.embed.weight.data_ptr()


def test_symlinked_item_path_is_written_through(tmp_path: Path, schema_dir: Path) -> None:
    item = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "models" / "artifacts", **EXAMPLE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "models" / "item.json"
    link.symlink_to(elsewhere / "real.json")
    save_item(item, link)
    assert link.is_symlink() and (elsewhere / "real.json").is_file()
    # hrefs are relative to where the document really is (outside its directory: allowed explicitly)
    assert validate_item(elsewhere / "real.json", schema_dir, allow_outside=[tmp_path / "models"]).valid
    assert not validate_item(elsewhere / "real.json", schema_dir).valid  # the artifact is outside 'elsewhere'
    assert json.loads((elsewhere / "real.json").read_text())["assets"]["model"]["href"].startswith("../models/")


_KILLER = """
import os, signal, sys
import torch_models as tm
import mlm_export.api as api
from mlm_export import export_item
from mlm_export.files import Staging

moment, sig = sys.argv[2], getattr(signal, sys.argv[3])
die = lambda: os.kill(os.getpid(), sig)
if moment == "written":
    original_write = api.write_staged
    api.write_staged = lambda measured, staging: (original_write(measured, staging), die())[0]
elif moment == "validating":
    original_build = api.item_from_description
    api.item_from_description = lambda *a, **k: (die(), original_build(*a, **k))[1]
elif moment == "published":
    original_publish = Staging.publish
    Staging.publish = lambda self, *a, **k: (original_publish(self, *a, **k), die())[0]
export_item(tm.WideMLP(), artifact_dir=sys.argv[1], input_shape=[-1, 256])
print("finished")
"""


def _run_killed(directory: Path, moment: str, sig: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLER), str(directory), moment, sig],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("moment", ["written", "validating", "published"])
def test_retry_after_kill_9_succeeds(moment: str, tmp_path: Path) -> None:
    result = _run_killed(tmp_path, moment, "SIGKILL")
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "finished" not in result.stdout
    assert _leftovers(tmp_path)  # a kill -9 cannot clean up: the staging directory is still there
    item = export_item(tm.WideMLP(), artifact_dir=tmp_path, input_shape=[-1, 256])
    assert _leftovers(tmp_path) == []  # the retry recognised the dead run's temporaries and removed them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["WideMLP.safetensors"]
    assert Path(item.assets["model"].href).stat().st_nlink == 1


@pytest.mark.parametrize("moment", ["written", "validating"])
def test_sigterm_cleans_up_like_ctrl_c(moment: str, tmp_path: Path) -> None:
    result = _run_killed(tmp_path, moment, "SIGTERM")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_is_an_output_error(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with pytest.raises(OutputError, match="no space left on device") as info:
            export_item(tm.WideMLP(), artifact_dir=mount / "artifacts", input_shape=[-1, 256])  # ~1 MiB of weights
        assert str(mount / "artifacts") in str(info.value)
        assert not (mount / "artifacts").exists()
        item = export_item(tm.TinyMLP(), artifact_dir=tmp_path / "a", **EXAMPLE)
        handle = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError, match="No space left"):
                for _ in range(1024):  # bounded: 256 KiB fill the tmpfs after 64 chunks
                    os.write(handle, b"\0" * 4096)
        finally:
            os.close(handle)
        with pytest.raises(OutputError, match="no space left on device"):
            save_item(item, mount / "item.json", allow_outside=[tmp_path])
        assert sorted(p.name for p in mount.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)
