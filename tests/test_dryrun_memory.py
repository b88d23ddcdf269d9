"""The dry-run memory cap holds: a child process's peak RSS stays within cap + its interpreter baseline, or the run
is refused with DryRunMemoryError before it starts, for models whose activations dominate (issue 21, point 14).

Each case runs in a child (``memcap_child.py``) that first runs the same call at 64x64 pixels (its baseline: torch,
the model and every lazily imported module loaded), then at the case's size under a small cap (the code before the
fix predicted that run under it and peaked over it) and under a larger one (the run must fit, not be refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mlm_export

TESTS = Path(__file__).resolve().parent
CHILD = TESTS / "memcap_child.py"
MB = 10**6
#: The repository whose mlm_export this test imported (so that the children run the same code).
SOURCE_ROOT = str(Path(mlm_export.__file__).resolve().parents[1])

requires_peak_reset = pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs to reset VmHWM"
)

# case, pixels per side, small cap (MB), large cap (MB), what the refusal under the small cap names
CASES = [
    ("safetensors", 1500, 200, 600, "[1, 3, 1500, 1500]"),
    ("torchscript", 1500, 200, 600, "[1, 3, 1500, 1500]"),
    ("onnx", 1500, 200, 600, "[1, 3, 1500, 1500]"),
    ("extra-slices", 200, 100, 400, "[33, 3, 200, 200]"),  # the batch's extra-slices check: batch 1 + 32
    ("unpredictable", 1000, 200, 600, "a guess"),  # no meta run: every probe real, batch 2 included
    ("check-torch", 1500, 200, 600, "[1, 3, 1500, 1500]"),
    ("check-onnx", 1500, 200, 600, "[1, 3, 1500, 1500]"),
]


def _env() -> dict[str, str]:
    """The children's environment: this test's mlm_export, probes as users run them (not twice, as the suite's)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE_ROOT, str(TESTS)]), "OMP_NUM_THREADS": "2"}
    env.pop("MLM_EXPORT_VERIFY_PROBES", None)
    return env


@requires_peak_reset
@pytest.mark.parametrize(("case", "size", "small", "large", "named"), CASES, ids=[c[0] for c in CASES])
def test_peak_rss_stays_within_the_cap(case: str, size: int, small: int, large: int, named: str) -> None:
    """Under the small cap the run is refused (or fits); under the large one it runs and fits."""
    result = subprocess.run(
        [sys.executable, str(CHILD), case, str(size), str(small * MB), str(large * MB)],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    tight, roomy = json.loads(result.stdout.strip().splitlines()[-1])["runs"]
    shown = {key: tight[key] for key in ("added", "refused", "message")}
    assert tight["refused"] or tight["added"] <= tight["cap"], f"peak {tight['added'] / MB:.0f} MB over the cap"
    if tight["refused"]:
        assert "max_dry_run_memory" in tight["message"] and named in tight["message"], shown
        assert tight["added"] <= tight["cap"], shown  # runs made before the refusal stayed within the cap
    assert not roomy["refused"], roomy["message"]
    assert roomy["added"] <= roomy["cap"], f"peak {roomy['added'] / MB:.0f} MB over the cap of {large} MB"


def _cli_peak(arguments: list[str]) -> tuple[int, str, int]:
    """Exit status, stderr and peak RSS (bytes) of one ``mlm-export`` process (its own parent measures it)."""
    script = (
        "import resource, subprocess, sys; "
        "r = subprocess.run([sys.executable, '-m', 'mlm_export', *sys.argv[1:]], capture_output=True, text=True); "
        "sys.stderr.write(r.stderr); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    result = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=300,
                            env=_env())  # fmt: skip
    code, peak = result.stdout.split()
    return int(code), result.stderr, int(peak)


@requires_peak_reset
def test_cli_refuses_a_torchscript_run_over_the_cap(tmp_path: Path) -> None:
    """``mlm-export inspect`` of a TorchScript conv over the cap exits 1 naming the cap; the process stays within
    cap + the same command's peak at 64x64 (before the fix: no prediction, batch 1 and 2 run, +600 MB)."""
    path = tmp_path / "conv.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 8, 3)), path)
    base = ["inspect", str(path), "--max-dry-run-memory", "200MB"]
    code, stderr, baseline = _cli_peak([*base, "--input-shape=-1,3,64,64"])
    assert code == 0, stderr[-2000:]
    code, stderr, peak = _cli_peak([*base, "--input-shape=-1,3,1500,1500"])
    assert peak <= baseline + 200 * MB, f"peak {(peak - baseline) / MB:.0f} MB over the 64x64 run's"
    assert code == 1, stderr[-2000:]
    assert "--max-dry-run-memory" in stderr and "Traceback" not in stderr
