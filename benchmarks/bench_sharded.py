"""Describing a sharded checkpoint (index checks, header counts, parallel hashing) against sequential hashing.

Run: ``.venv/bin/python benchmarks/bench_sharded.py [--size-mb 4096] [--shards 8]``. The shards are written once
(safetensors, ``model-0000k-of-0000n``) and read once before timing so both sides hash from the page cache. Ours:
:func:`read_sharded` + :func:`hash_in_parallel` (one thread per core); baseline: ``hashlib.file_digest`` of the
shards one after another. Targets: ratio <= 0.7; header-only parameter counting < 50 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from mlm_export.adapters.torch.sharded import hash_in_parallel, read_sharded


def write_shards(directory: Path, size_mb: int, shards: int) -> Path:
    """``shards`` safetensors files of ``size_mb / shards`` MiB each (16 MiB tensors) and their index."""
    per_shard = max(1, size_mb // shards)
    weight_map = {}
    for number in range(1, shards + 1):
        name = f"model-{number:05d}-of-{shards:05d}.safetensors"
        count = max(1, per_shard // 16)
        tensors = {f"layer{number}.block{i}.weight": torch.full((2048, 2048), float(i)) for i in range(count)}
        save_file(tensors, str(directory / name))
        weight_map.update(dict.fromkeys(tensors, name))
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def sequential(paths: list[Path]) -> list[str]:
    digests = []
    for path in paths:
        with open(path, "rb") as handle:
            digests.append("1220" + hashlib.file_digest(handle, "sha256").hexdigest())
    return digests


def measure(size_mb: int, shards: int = 8, repeats: int = 2) -> dict[str, float]:
    """Best-of-``repeats`` seconds of ours and the baseline, their ratio, and the header-only count time."""
    with tempfile.TemporaryDirectory() as tmp:
        index = write_shards(Path(tmp), size_mb, shards)
        paths = sorted(Path(tmp).glob("model-*.safetensors"))
        expected = sequential(paths)  # warm-up: page cache
        ours_times, base_times, count_times = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            sequential(paths)
            base_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            checkpoint = read_sharded(index)
            count_times.append(time.perf_counter() - start)
            digests = hash_in_parallel((*checkpoint.shards, index))
            ours_times.append(time.perf_counter() - start)
            assert [digests[p].checksum for p in paths] == expected
        total = sum(p.stat().st_size for p in paths)
    ours, base = min(ours_times), min(base_times)
    return {"ours_s": ours, "baseline_s": base, "ratio": ours / base, "count_s": min(count_times), "bytes": total}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=4096)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    print(measure(args.size_mb, args.shards))
