"""adapters/torch/safetensors_writer.py: save_file's bytes, hashed while written, never read back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from mlm_export import export_item
from mlm_export.adapters.torch import safetensors_writer
from mlm_export.adapters.torch.safetensors_writer import DTYPES, write_hashed


def _every_dtype() -> dict[str, torch.Tensor]:
    """One tensor of each dtype both know, plus awkward names, a scalar and empty tensors, in no particular order."""
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for index, name in enumerate(sorted(DTYPES, reverse=True)):
        dtype = getattr(torch, name, None)
        if dtype is None:
            continue
        values = torch.randint(0, 100, (3, index + 1), generator=generator, dtype=torch.uint8)
        one_byte = torch.empty((), dtype=dtype).element_size() == 1
        tensors[f"t{index}.{name}"] = values.view(dtype) if one_byte else values.to(dtype)  # 8-bit floats: raw bits
    tensors['é "quoted"\n\\name'] = torch.arange(5, dtype=torch.int64)
    tensors["scalar"] = torch.tensor(2.5)
    tensors["empty"] = torch.zeros(0, 4)
    tensors["also empty"] = torch.zeros(2, 0, dtype=torch.int8)
    return tensors


def _sha256(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_file_is_byte_identical_to_save_file_and_its_digest_is_the_files(tmp_path: Path) -> None:
    tensors = _every_dtype()
    reference, ours = tmp_path / "reference.safetensors", tmp_path / "ours.safetensors"
    safetensors.torch.save_file(tensors, str(reference), metadata={"format": "pt"})

    digest = write_hashed(tensors, ours, {"format": "pt"})

    assert digest is not None
    assert ours.read_bytes() == reference.read_bytes()
    assert (digest.path, digest.size, digest.checksum) == (ours, reference.stat().st_size, _sha256(reference))
    loaded = safetensors.torch.load_file(str(ours))
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        raw = loaded[name].reshape(-1).view(torch.uint8)
        assert loaded[name].dtype == tensor.dtype and torch.equal(raw, tensor.reshape(-1).view(torch.uint8))


def test_chunks_smaller_than_a_tensor_write_and_hash_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tensors split into many writes (and hash updates), in order."""
    tensors = {"a": torch.randn(1000), "b": torch.arange(777, dtype=torch.int16), "c": torch.randn(3, 5)}
    reference = tmp_path / "reference.safetensors"
    safetensors.torch.save_file(tensors, str(reference), metadata={"format": "pt"})
    monkeypatch.setattr(safetensors_writer, "CHUNK", 100)

    digest = write_hashed(tensors, tmp_path / "ours.safetensors", {"format": "pt"})

    assert digest is not None and digest.checksum == _sha256(reference)
    assert (tmp_path / "ours.safetensors").read_bytes() == reference.read_bytes()


def test_several_metadata_keys_are_written_sorted_so_the_checksum_is_stable(tmp_path: Path) -> None:
    """safetensors writes several keys in hash-map order (it varies); sorted, one model always gives one file."""
    tensors = {"w": torch.ones(2, 2)}
    metadata = {"mlm": '{"x": 1}', "format": "pt", "body.1.weight": "body.0.weight"}

    first = write_hashed(tensors, tmp_path / "one.safetensors", metadata)
    second = write_hashed(tensors, tmp_path / "two.safetensors", dict(reversed(metadata.items())))

    assert first is not None and second is not None and first.checksum == second.checksum
    with safe_open(str(tmp_path / "one.safetensors"), framework="pt") as handle:
        assert handle.metadata() == metadata
        assert torch.equal(handle.get_tensor("w"), tensors["w"])
    raw = (tmp_path / "one.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert list(header["__metadata__"]) == sorted(metadata)


class _Subclass(torch.Tensor):
    """A tensor subclass (quantized and distributed tensors are some): its memory may not be its values."""


def test_what_it_does_not_know_is_left_to_save_file_and_nothing_is_written(tmp_path: Path) -> None:
    strided = torch.randn(4, 4).t()  # not contiguous: save_file's own error says so
    assert write_hashed({"w": strided}, tmp_path / "x.safetensors", None) is None
    assert write_hashed({"w": torch.randn(4).to_sparse()}, tmp_path / "x.safetensors", None) is None
    assert write_hashed({"w": torch.ones(3).as_subclass(_Subclass)}, tmp_path / "x.safetensors", None) is None
    assert not (tmp_path / "x.safetensors").exists()


def test_an_existing_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "taken.safetensors"
    target.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        write_hashed({"w": torch.ones(3)}, target, None)
    assert target.read_bytes() == b"someone else's"


FAILING_WRITE = """
import errno, resource, signal, sys
from pathlib import Path
import torch
from mlm_export.adapters.torch.safetensors_writer import write_hashed
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
target = Path(sys.argv[1])
try:
    write_hashed({"w": torch.ones(1 << 20)}, target, {"format": "pt"})  # 4 MiB: the limit stops it at 1 MiB
except OSError as exc:
    print("failed", errno.errorcode[exc.errno], target.exists())
"""


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """A real write failure (the file-size limit, in a child process): the error comes out, no file remains."""
    target = tmp_path / "big.safetensors"
    done = subprocess.run([sys.executable, "-c", FAILING_WRITE, str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["failed", "EFBIG", "False"]
    assert list(tmp_path.iterdir()) == []


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_export_item_does_not_read_the_written_file_back(tmp_path: Path) -> None:
    """The Item's checksum is the file's, and exporting reads far less than the 32 MiB file (it was hashed in RAM).

    Writing it with save_file and then hashing it read all 32 MiB back.
    """
    model = nn.Linear(2048, 4096)  # 32 MiB of float32 weights
    arguments = {"input_shape": [-1, 2048], "bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}
    export_item(model, artifact_dir=tmp_path / "warm", **arguments)  # imports done, caches warm
    before = _bytes_read()

    item = export_item(model, artifact_dir=tmp_path / "out", **arguments)

    read = _bytes_read() - before
    written = tmp_path / "out" / "Linear.safetensors"
    assert item.assets["model"].extra_fields["file:checksum"] == _sha256(written)
    assert item.assets["model"].extra_fields["file:size"] == written.stat().st_size
    assert read < written.stat().st_size // 4, f"{read} bytes read while exporting"
    reference = tmp_path / "reference.safetensors"
    safetensors.torch.save_model(model, str(reference), metadata={"format": "pt"})
    assert written.read_bytes() == reference.read_bytes()


class _Counting(nn.Module):
    """A forward that changes a buffer in place: the file must hold the state after the dry-run."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x)


class _Watching(nn.Module):
    """A forward that waits (at most 10 s) until the weights file appears in the staging directory beside it."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)
        self.directory = directory
        self.seen: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deadline = time.monotonic() + 10
        while not self.seen and time.monotonic() < deadline:
            self.seen = [p.name for p in self.directory.rglob(".early-*.safetensors")]
            time.sleep(0.01)
        return self.linear(x)


ARGUMENTS = {"input_shape": [-1, 8], "bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}


def test_the_file_is_written_while_the_dry_run_runs(tmp_path: Path) -> None:
    model = _Watching(tmp_path)
    item = export_item(model, artifact_dir=tmp_path, model_kwargs={}, **ARGUMENTS)

    assert model.seen, "no early file appeared during the forward"
    written = tmp_path / "_Watching.safetensors"
    assert item.assets["model"].extra_fields["file:checksum"] == _sha256(written)
    reference = tmp_path / "reference.safetensors"
    safetensors.torch.save_model(model, str(reference), metadata={"format": "pt"})
    assert written.read_bytes() == reference.read_bytes()
    assert not list(tmp_path.rglob(".early-*"))


def _made_plainly() -> torch.nn.Module:
    return _Counting()


def _made_under_inference_mode() -> torch.nn.Module:
    with torch.inference_mode():
        return _Counting()


@pytest.mark.parametrize("make", [_made_plainly, _made_under_inference_mode], ids=["plain", "inference-mode"])
def test_a_dry_run_that_changes_the_weights_gets_them_written_after_it(tmp_path: Path, make) -> None:
    """The file holds the state after the forwards: a plain early file is dropped for it, and inference tensors
    (version 0 whatever changes them) get no early file at all."""
    model = make()
    item = export_item(model, artifact_dir=tmp_path, model_kwargs={}, **ARGUMENTS)

    assert model.calls.item() > 0
    written = tmp_path / "_Counting.safetensors"
    assert safetensors.torch.load_file(str(written))["calls"].item() == model.calls.item()
    assert item.assets["model"].extra_fields["file:checksum"] == _sha256(written)
    assert not list(tmp_path.rglob(".early-*"))
