"""Cost of the batch-size search against one forward pass at the batch it suggests.

Run: ``.venv/bin/python benchmarks/bench_batch_size.py``. The search (warm-up + 3 timed runs per batch, doubling
until the stopping rule) runs on a small conv net at 64 x 64 on the CPU; the baseline is the median of 5 forwards at
the suggested batch, timed after. Target: search time <= 20 x one forward at the suggestion.
"""

from __future__ import annotations

import statistics
import time

import torch

from mlm_export.batch_size import _runner, search_batch_size


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()  # fmt: skip


def measure(size: int = 64) -> dict[str, float]:
    """Seconds of the whole search, of one forward at the suggestion, their ratio and the suggestion."""
    net = model()
    run = _runner(net, [((1, 4, size, size), "float32")], torch.device("cpu"))
    start = time.perf_counter()
    result = search_batch_size(run, budget=2**31)
    search_s = time.perf_counter() - start
    batch = result.suggestion
    x = torch.rand(batch, 4, size, size)
    times = []
    with torch.inference_mode():
        for _ in range(5):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    forward_s = statistics.median(times)
    return {"search_s": search_s, "forward_s": forward_s, "ratio": search_s / forward_s, "batch": batch}


if __name__ == "__main__":
    print(measure())
