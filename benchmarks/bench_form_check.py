"""Cost of one live check of ``mlm-export form`` (``FormSession.build``: ``export_item`` in full) on ResNet-18.

Run: ``.venv/bin/python benchmarks/bench_form_check.py [--checks 3] [--size small]``. A ResNet-18 TorchScript file
(random weights, ~45 MB; ``--size small``: a 2-block CNN of ~2 MB) is made in a temporary folder; the first check
and the next ones (the file unchanged: a person typing) are timed, with the hash of the file alone beside them.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def make_model(folder: Path, size: str) -> Path:
    import torch

    torch.manual_seed(0)
    if size == "small":
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 8, 3))
    else:
        import torchvision

        net = torchvision.models.resnet18(weights=None)
    path = folder / "resnet18.pt"
    torch.jit.script(net.eval()).save(str(path))
    return path


def measure(checks: int, size: str) -> dict[str, float]:
    """Seconds of the first live check, the best of the next ones, and of hashing the file once."""
    from mlm_export.form.session import FormSession
    from mlm_export.hashing import hash_file

    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(Path(tmp), size)
        start = time.perf_counter()
        hash_file(path, progress=False)
        hashing = time.perf_counter() - start
        session = FormSession()
        session.choose_path(str(path))
        arguments = {"input_shape": [1, 3, 224, 224], "tasks": ["classification"], "license": "MIT"}
        times, children = [], []
        try:
            for index in range(checks):
                arguments["name"] = f"net-{index}"  # what a keystroke changes
                start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                assert session.build(arguments) is not None
                times.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the hashing child, when one runs
                children.append(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime)
        finally:
            session.close()
    return {
        "hash_s": hashing, "first_check_s": times[0], "next_check_s": min(times[1:] or times),
        "next_child_cpu_s": max(0.0, children[-1]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=3)
    parser.add_argument("--size", choices=("resnet18", "small"), default="resnet18")
    args = parser.parse_args()
    r = measure(args.checks, args.size)
    print(
        f"hash alone {r['hash_s']:.3f} s; first check {r['first_check_s']:.3f} s; next check {r['next_check_s']:.3f} s"
        f" (hashing child CPU {r['next_child_cpu_s']:.3f} s)"
    )


if __name__ == "__main__":
    main()
