"""``mlm-export export FILE`` as a process against the floors it can reach, each its own subprocess.

The 16-layer, 4096-wide MLP (``torch.save`` state_dict, ``--model-class``, ``--input-shape=-1,4096``):

* floor A: ``sha256`` of the file (a Python process that hashes it);
* floor B: ``import torch`` + mmap load into the class built on the meta device + one forward;
* ours: the whole CLI export (imports, hashing, load, dry-run, Item, validation, write).

Target: ours <= 1.15 x max(A, B) (medians), and our peak RSS <= 1.2 x floor B's. ``--before DIR`` also times the
CLI of another checkout (e.g. ``/work/main``) in the same run.

Each CLI runs once untimed before the timed rounds, with ``PYTHONDONTWRITEBYTECODE`` cleared for the children: it
writes its modules' bytecode, as ``pip install`` does for an installed package and did for torch's. Without it, a
checkout in an environment that sets that variable compiles ~30 ms of its own sources on every run, which floor B
(importing an installed torch) never does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYERS = 16
WIDTH = 4096
#: Runs a module or code and reports the process's own peak RSS (VmHWM: ru_maxrss is inherited across exec).
WRAP = """
import atexit, runpy, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("VMHWM %s\\n" % line.split()[1])
atexit.register(report)
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, *sys.argv[3:]]
if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<bench>", "exec"), {"__name__": "__main__"})
"""
HASH = "import hashlib, sys\nwith open(sys.argv[1], 'rb') as f: hashlib.file_digest(f, 'sha256')"
FORWARD = """
import sys, torch
sys.path.insert(0, {bench!r})
from bench_export import Wide
with torch.device("meta"):
    model = Wide({layers})
model.load_state_dict(torch.load(sys.argv[1], weights_only=True, mmap=True), assign=True)
with torch.inference_mode():
    model.eval()(torch.randn(1, {width}))
"""


def _timed(kind: str, target: str, args: list[str], env: dict[str, str], cwd: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process running a module or code.

    ``cwd`` must hold no ``mlm_export``: ``python -c`` puts the working directory first on ``sys.path``, before
    ``PYTHONPATH``, so a run from a checkout would import that checkout whatever ``--before`` says.
    """
    start = time.perf_counter()
    command = [sys.executable, "-c", WRAP, kind, target, *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{target[:40]} {args[:2]} failed: {result.stderr[-2000:]}")
    peak = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("VMHWM ")]
    return elapsed, int(peak[-1]) * 1024


def _export_args(path: Path, output: Path, layers: int) -> list[str]:
    return ["export", str(path), "--model-class", "bench_export:Wide",
            "--model-kwargs", json.dumps({"layers": layers}), "--input-shape=-1,4096", "--bbox", "0", "0", "1", "1",
            "--datetime", "2024-01-01T00:00:00Z", "--overwrite", "-o", str(output)]  # fmt: skip


def _write_weights(path: Path, layers: int) -> int:
    import torch

    sys.path.insert(0, str(HERE))
    from bench_export import Wide

    with torch.device("meta"):
        model = Wide(layers)
    torch.save({k: torch.randn(v.shape) for k, v in model.state_dict().items()}, path)
    return path.stat().st_size


def measure(repeats: int = 3, before: str | None = None, layers: int = LAYERS) -> dict[str, float]:
    """Medians of ``repeats`` runs of each process, interleaved (``layers`` x 64 MiB of weights)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code_dir = str(HERE.parent)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.pt"
        weights = _write_weights(path, layers)
        forward = FORWARD.format(bench=str(HERE), layers=layers, width=WIDTH)
        runs: dict[str, list[tuple[float, int]]] = {"hash": [], "forward": [], "ours": [], "before": []}
        clis = {"ours": code_dir, **({"before": before} if before else {})}
        cli_runs = {
            name: ({**env, "PYTHONPATH": os.pathsep.join([checkout, str(HERE)])},
                   _export_args(path, Path(tmp) / f"{name}.json", layers))
            for name, checkout in clis.items()
        }  # fmt: skip
        _timed("code", HASH, [str(path)], env, tmp)  # page cache warm
        for cli_env, cli_args in cli_runs.values():  # bytecode written, page cache warm (see the module docstring)
            _timed("module", "mlm_export", cli_args, cli_env, tmp)
        for _ in range(repeats):
            runs["hash"].append(_timed("code", HASH, [str(path)], env, tmp))
            runs["forward"].append(_timed("code", forward, [str(path)], env, tmp))
            for name, (cli_env, cli_args) in cli_runs.items():
                runs[name].append(_timed("module", "mlm_export", cli_args, cli_env, tmp))
    result: dict[str, float] = {"weights_bytes": weights}
    for name, values in runs.items():
        if values:
            result[f"{name}_s"] = statistics.median(v[0] for v in values)
            result[f"{name}_rss"] = statistics.median(v[1] for v in values)
    floor = max(result["hash_s"], result["forward_s"])
    result["floor_s"] = floor
    result["time_ratio"] = result["ours_s"] / floor
    result["rss_ratio"] = result["ours_rss"] / result["forward_rss"]
    if before:
        result["before_ratio"] = result["before_s"] / floor
        result["before_rss_ratio"] = result["before_rss"] / result["forward_rss"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="another checkout whose CLI is timed too (e.g. /work/main)")
    args = parser.parse_args()
    print(json.dumps(measure(args.repeats, args.before), indent=1))


if __name__ == "__main__":
    main()
