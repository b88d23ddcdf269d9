"""``export_item`` on a ~1 GB state_dict file against, in the same run, sha256 of that file + one forward pass.

Run: ``.venv/bin/python benchmarks/bench_export.py [--size-mb 1024]``. Each measurement runs in a fresh
subprocess so peak RSS (``ru_maxrss``) belongs to it alone; libraries are imported before the clock starts in both.
Targets: time ratio <= 1.10, peak RSS <= 1.2x the weights' size. RSS is printed for the whole process and less
the RSS of the idle interpreter with torch imported (about 0.5 GiB for the CUDA build of torch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 4096
CHILD = r"""
import hashlib, json, resource, sys, time
sys.path.insert(0, {bench_dir!r})
import torch
from bench_export import Wide
mode, path, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "export":
    from mlm_export import export_item
torch.manual_seed(0)
idle_rss = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
start = time.perf_counter()
if mode == "baseline":
    with open(path, "rb") as handle:
        hashlib.file_digest(handle, "sha256")
    with torch.device("meta"):
        model = Wide(layers)
    model.load_state_dict(torch.load(path, weights_only=True, mmap=True), assign=True)
    with torch.inference_mode():
        model.eval()(torch.randn(1, {width}))
else:
    export_item(path, model_class=Wide, model_kwargs={{"layers": layers}}, input_shape=[-1, {width}],
                bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z", progress=False)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"seconds": elapsed, "peak_rss": peak, "idle_rss": idle_rss}}))
"""


def _wide_class():  # noqa: ANN202 - torch is imported lazily
    import torch

    class Wide(torch.nn.Module):
        """A stack of square Linear layers (4096 x 4096 float32 = 64 MiB each) and a 10-class head."""

        def __init__(self, layers: int) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(layers)])
            self.head = torch.nn.Linear(WIDTH, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    return Wide


def __getattr__(name: str):  # noqa: ANN202 - lets the child process import Wide
    if name == "Wide":
        return _wide_class()
    raise AttributeError(name)


SHARED_SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
if SHARED_SCHEMAS.is_dir():
    os.environ.setdefault("MLM_EXPORT_SCHEMA_DIR", str(SHARED_SCHEMAS))


def _run(mode: str, path: Path, layers: int) -> dict[str, float]:
    code = CHILD.format(bench_dir=str(Path(__file__).parent), width=WIDTH)
    result = subprocess.run(
        [sys.executable, "-c", code, mode, str(path), str(layers)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(size_mb: int, repeats: int = 2) -> dict[str, float]:
    """Write the state_dict, then time baseline and export alternately (best of ``repeats``)."""
    import torch

    layers = max(1, round(size_mb * 1024 * 1024 / (WIDTH * WIDTH * 4)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.pt"
        Wide = _wide_class()  # noqa: N806
        with torch.device("meta"):
            model = Wide(layers)
        state = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
        torch.save(state, path)
        del state
        weights = path.stat().st_size
        _run("baseline", path, layers)  # warm the page cache
        base = [_run("baseline", path, layers) for _ in range(repeats)]
        ours = [_run("export", path, layers) for _ in range(repeats)]
    base_s = min(r["seconds"] for r in base)
    ours_s = min(r["seconds"] for r in ours)
    rss = max(r["peak_rss"] for r in ours)
    added = max(r["peak_rss"] - r["idle_rss"] for r in ours)
    return {
        "added_rss": added,
        "added_ratio": added / weights,
        "baseline_peak_rss": max(r["peak_rss"] for r in base),
        "weights_bytes": weights,
        "baseline_s": base_s,
        "export_s": ours_s,
        "time_ratio": ours_s / base_s,
        "peak_rss": rss,
        "rss_ratio": rss / weights,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    r = measure(args.size_mb, args.repeats)
    mib = r["weights_bytes"] / 2**20
    print(f"{'measure':<52}{'ours':>10}{'baseline':>10}{'ratio':>8}  target")
    print(f"{f'export_item vs sha256+forward ({mib:.0f} MiB state_dict)':<52}"
          f"{r['export_s']:>9.2f}s{r['baseline_s']:>9.2f}s{r['time_ratio']:>8.2f}  <= 1.10")  # fmt: skip
    print(f"{'export_item peak RSS (whole process) vs weights size':<52}"
          f"{r['peak_rss'] / 2**20:>7.0f}MiB{mib:>7.0f}MiB{r['rss_ratio']:>8.2f}  <= 1.20")  # fmt: skip
    print(f"{'  same, less the RSS of the idle interpreter + torch':<52}"
          f"{r['added_rss'] / 2**20:>7.0f}MiB{mib:>7.0f}MiB{r['added_ratio']:>8.2f}  <= 1.20")  # fmt: skip
    print(f"{'  (baseline process peak RSS, for reference)':<52}{r['baseline_peak_rss'] / 2**20:>7.0f}MiB")


if __name__ == "__main__":
    main()
