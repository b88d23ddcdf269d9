"""The dry-run memory cap holds: peak RSS of a dry-run over its interpreter baseline, against the cap.

Run: ``.venv/bin/python benchmarks/bench_memcap.py [--size 3000]``. For each model whose activations dominate (a
224-parameter 3->8 channel 3x3 convolution as safetensors + class, TorchScript and ONNX, run by ``inspect_model``;
plus the extra-slices check, a model no meta run can predict and ``check_item``), a child process
(``tests/memcap_child.py``) warms up at 64x64 pixels, then runs at ``size`` x ``size`` under a tight cap (7.5x the
input bytes: the code before issue 21 predicted inputs + outputs, 3.7x, under it and peaked at about 10x) and under a
roomy one (48x: three times the 16x guess for a model no meta run can predict). Reported: the peak RSS over the RSS
before the run, or that it was refused (``DryRunMemoryError``, nothing run). Target: every run refused or peak <= cap,
and no roomy run refused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHILD = HERE.parent / "tests" / "memcap_child.py"
MB = 10**6
#: Cases and the side (pixels) they run at, as a share of ``size`` (the extra-slices check runs batch 33).
CASES = {"safetensors": 1.0, "torchscript": 1.0, "onnx": 1.0, "extra-slices": 0.15, "unpredictable": 0.67,
         "check-torch": 1.0, "check-onnx": 1.0}  # fmt: skip


def caps(case: str, side: int) -> tuple[int, int]:
    """(tight, roomy) caps in bytes for ``case`` at ``side`` pixels (3-channel float32 input)."""
    inputs = 3 * side * side * 4 * (33 if case == "extra-slices" else 1)
    return int(inputs * 7.5), int(inputs * 48)


def measure(size: int = 1500) -> list[dict[str, Any]]:
    """One row per case and cap: case, side, cap, added (peak RSS over the run's start), refused, ok."""
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE.parent / "tests")])}
    env.pop("MLM_EXPORT_VERIFY_PROBES", None)
    for case, share in CASES.items():
        side = max(64, int(size * share))
        tight, roomy = caps(case, side)
        result = subprocess.run([sys.executable, str(CHILD), case, str(side), str(tight), str(roomy)],
                                capture_output=True, text=True, timeout=600, env=env, check=True)  # fmt: skip
        runs = json.loads(result.stdout.strip().splitlines()[-1])["runs"]
        for run, kind in zip(runs, ("tight", "roomy"), strict=True):
            ok = (run["refused"] or run["added"] <= run["cap"]) and not (kind == "roomy" and run["refused"])
            rows.append({"case": case, "side": side, "kind": kind, "cap": run["cap"], "added": run["added"],
                         "refused": run["refused"], "ok": ok})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1500, help="pixels per side of the large runs (default 1500)")
    for row in measure(parser.parse_args().size):
        outcome = "refused" if row["refused"] else f"peak +{row['added'] / MB:.0f} MB"
        print(f"{row['case']:<14} {row['side']:>5} px  cap {row['cap'] / MB:>6.0f} MB  {outcome:<16} "
              f"{'ok' if row['ok'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
