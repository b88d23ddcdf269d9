"""Cost of the batch-size search against one forward pass at the batch it suggests.

Run: ``.venv/bin/python benchmarks/bench_batch_size.py``. The search (warm-up + 3 timed runs per batch, doubling
until the stopping rule) runs on a small conv net at 64 x 64 on the CPU; the baseline is the median of 5 forwards at
the suggested batch, timed after. Target: search time <= 20 x one forward at the suggestion.

The rule itself has a cost that no implementation avoids: 4 forwards (1 warm-up + 3 timed) at every batch it
visits. ``floor`` is that cost in the same unit as ``ratio``: 4 x the sum of the median forward times the search
measured at each visited batch, over one forward at the suggestion. With time linear in the batch, the rule visits
1, 2 and 4 before two doublings gain < 5 %, so the floor is 4 x 7 = 28 forwards at batch 1 (7 at a suggestion of 4);
``ratio - floor`` is what the implementation adds (warm-up memory hooks, input generation, Python overhead).
"""

from __future__ import annotations

import statistics
import time

import torch

from mlm_export.batch_size import TIMED_RUNS, BatchRunner, search_batch_size


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()  # fmt: skip


def measure_once(size: int = 64) -> dict[str, float]:
    """One search: its seconds, one forward at the suggestion, their ratio, the rule's floor, the suggestion."""
    net = model()
    runner = BatchRunner(net, [((1, 4, size, size), "float32")], torch.device("cpu"))
    start = time.perf_counter()
    result = search_batch_size(runner, budget=2**31, forward=runner.forward)
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
    floor = (1 + TIMED_RUNS) * sum(result.seconds.values()) / forward_s
    return {
        "search_s": search_s,
        "forward_s": forward_s,
        "ratio": search_s / forward_s,
        "floor": floor,
        "batch": batch,
        "visited": len(result.seconds),
    }


def measure(size: int = 64, repeats: int = 5) -> dict[str, float]:
    """Medians of ``repeats`` searches (the machine may be shared: one search is a few hundred ms)."""
    runs = [measure_once(size) for _ in range(repeats)]
    median = {key: statistics.median(r[key] for r in runs) for key in ("search_s", "forward_s", "ratio", "floor")}
    return {**median, "batch": statistics.mode(r["batch"] for r in runs), "repeats": repeats}


if __name__ == "__main__":
    print(measure())
