"""ONNX adapter: static description of a model with large external data, and hashing of that data.

Run: ``.venv/bin/python benchmarks/bench_onnx.py [--size-mb 1024] [--repeats 20] [--dense] [--dry-run]``.

In a temporary directory it builds ``y = x @ W`` whose float32 ``W`` (about ``--size-mb`` MiB) lives in external data
(a sparse file made with ``truncate``, or zeros written out with ``--dense``), then prints:

* the time of ``mlm_export.adapters.onnx.describe_static`` (read, check and describe the graph; weights not read,
  no dry-run): best and median of ``--repeats`` after one warm-up call. Target: < 50 ms for 1 GiB.
* the throughput of ``mlm_export.hashing.hash_file`` against ``hashlib.file_digest`` on the external data file,
  best of 3 each, alternating, after a warm-up read. Target: ratio >= 0.95.
* with ``--dry-run``: the time of a full ``describe`` (onnxruntime loads the weights and probes the batch dim).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from onnx_models import big_external_model  # noqa: E402

from mlm_export.adapters import ExportOptions  # noqa: E402
from mlm_export.adapters import onnx as onnx_adapter  # noqa: E402
from mlm_export.hashing import hash_file  # noqa: E402

TARGET_DESCRIBE_S = 0.050
TARGET_HASH_RATIO = 0.95


def densify(path: Path) -> None:
    """Overwrite the sparse file ``path`` with real zero bytes (same size), 64 MiB at a time."""
    size = path.stat().st_size
    block = bytes(64 * 1024 * 1024)
    with open(path, "r+b") as stream:
        written = 0
        while written < size:
            written += stream.write(block[: min(len(block), size - written)])


def time_describe(model: Path, repeats: int) -> tuple[float, float, int]:
    """Best and median seconds of ``describe_static``, and the parameter count it found."""
    described = onnx_adapter.describe_static(model)  # warm-up: imports, first read
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        described = onnx_adapter.describe_static(model)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), int(described.total_parameters or 0)


def baseline_digest(path: Path) -> str:
    with open(path, "rb") as stream:
        return "1220" + hashlib.file_digest(stream, "sha256").hexdigest()


def time_hashing(path: Path, repeats: int = 3) -> tuple[float, float]:
    """Best seconds of ``hash_file`` and of ``hashlib.file_digest`` (alternating), checked to agree."""
    expected = baseline_digest(path)  # warm-up: page cache
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        digest = hash_file(path, progress=False)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        baseline = baseline_digest(path)
        theirs.append(time.perf_counter() - start)
        if digest.checksum != expected or baseline != expected:
            raise SystemExit(f"checksum mismatch: {digest.checksum} != {expected}")
    return min(ours), min(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the external data in MiB (default 1024)")
    parser.add_argument("--repeats", type=int, default=20, help="timed describe_static calls (default 20)")
    parser.add_argument("--dense", action="store_true", help="write real zero bytes instead of a sparse file")
    parser.add_argument("--dry-run", action="store_true", help="also time a full describe (onnxruntime run)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        start = time.perf_counter()
        model = big_external_model(Path(tmp), args.size_mb)
        data = model.with_name(model.name + ".data")
        if args.dense:
            densify(data)
        build_s = time.perf_counter() - start
        size = data.stat().st_size
        mib = size / 2**20

        best, median, parameters = time_describe(model, args.repeats)
        ours_s, baseline_s = time_hashing(data)
        ratio = baseline_s / ours_s
        full_s = None
        if args.dry_run:
            start = time.perf_counter()
            onnx_adapter.describe(model, ExportOptions.from_flat(probe_dynamic=False))
            full_s = time.perf_counter() - start

    rows = [
        ("external data", f"{mib:,.0f} MiB ({'dense' if args.dense else 'sparse'}), built in {build_s:.2f} s"),
        ("parameters found", f"{parameters:,}"),
        ("describe_static best", f"{best * 1e3:.2f} ms  (target < {TARGET_DESCRIBE_S * 1e3:.0f} ms)"),
        ("describe_static median", f"{median * 1e3:.2f} ms over {args.repeats} calls"),
        ("hash_file", f"{ours_s:.3f} s  = {mib / ours_s:,.0f} MiB/s"),
        ("hashlib.file_digest", f"{baseline_s:.3f} s  = {mib / baseline_s:,.0f} MiB/s"),
        ("throughput ratio", f"{ratio:.3f}  (hash_file / file_digest, target >= {TARGET_HASH_RATIO})"),
    ]
    if full_s is not None:
        rows.append(("describe with dry-run", f"{full_s:.2f} s (onnxruntime loads the weights, one run)"))
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 60}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    ok = best < TARGET_DESCRIBE_S and ratio >= TARGET_HASH_RATIO
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
