"""Probing cost and memory prediction, measured in one process.

* ``probing``: a torchgeo ResNet-50 (13 bands, 256 px) and a timm ViT-B/16 (13 bands, 224 px), every axis probed
  from an example input. The cost of all probes = the time of :func:`mlm_export.probing.probe` less its real run at
  the base size, in units of one real forward (the one-time ``torch._dynamo`` import of the first meta run in a
  process is timed apart, ``meta_first_use_s``); the unit is the fastest real forward at the base size measured in
  the process, the same for both paths. Before = the real-forward path (``shapes_first=False``, what every
  probe cost before fake tensors: a real forward each); after = shapes first. Target: after <= 1.
* ``memory``: the dry-run's predicted peak (weights + live activations of the fake forward at the base shapes)
  against the measured one: weights + inputs + the peak of live bytes torch's CPU allocator reports to the profiler
  during one real forward at the same shapes (CUDA would use ``max_memory_allocated``). Target: within +-25 %, or
  within the resolution :data:`RESOLUTION_BYTES` (64 KiB) for the tiniest models: below it, scratch space that a
  library kernel allocates inside one op (oneDNN's LSTM takes 21 KiB for a 1 x 8 x 5 series; no meta kernel shows it)
  is most of the peak, and the dry-run guard, whose budgets are in MiB and GiB, cannot tell such peaks apart. The
  column buffer of torch's unfused CPU convolution, the largest such scratch space, is predicted
  (``adapters/torch/meta.conv_workspace_bytes``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "adapters" / "torch"))


def big_models(small: bool = False) -> dict[str, Callable[[], tuple[Any, Any]]]:
    """name -> factory of (model, example input); ``small``: a ResNet-18 at 64 px and a ViT-Tiny (smoke runs)."""
    import timm
    import torch
    from torchgeo.models import resnet18, resnet50

    if small:
        return {
            "torchgeo ResNet-18 (13 bands, 64 px)": lambda: (
                resnet18(weights=None, in_chans=13, num_classes=10), torch.randn(1, 13, 64, 64)),
            "timm ViT-Ti/16 (13 bands, 224 px)": lambda: (
                timm.create_model("vit_tiny_patch16_224", pretrained=False, in_chans=13, num_classes=10),
                torch.randn(1, 13, 224, 224)),
        }  # fmt: skip
    return {
        "torchgeo ResNet-50 (13 bands, 256 px)": lambda: (
            resnet50(weights=None, in_chans=13, num_classes=10), torch.randn(1, 13, 256, 256)),
        "timm ViT-B/16 (13 bands, 224 px)": lambda: (
            timm.create_model("vit_base_patch16_224", pretrained=False, in_chans=13, num_classes=10),
            torch.randn(1, 13, 224, 224)),
    }  # fmt: skip


@contextlib.contextmanager
def captured_probe(shapes_first: bool) -> Iterator[dict[str, Any]]:
    """Patch the torch adapter's ``probe``: force the path, time it, keep the backend and the result."""
    adapter = importlib.import_module("mlm_export.adapters.torch.describe")  # the package re-exports describe()

    original = adapter.probe
    seen: dict[str, Any] = {}

    def timed(backend: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["shapes_first"] = shapes_first
        real_runs: list[float] = []
        run = backend.run

        def timed_run(*run_args: Any, **run_kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return run(*run_args, **run_kwargs)
            finally:
                real_runs.append(time.perf_counter() - begin)

        backend.run = timed_run
        start = time.perf_counter()
        result = original(backend, *args, **kwargs)
        seen.update(seconds=time.perf_counter() - start, backend=backend, result=result, base_s=real_runs[0])
        return result

    adapter.probe = timed
    try:
        yield seen
    finally:
        adapter.probe = original


def _forward_seconds(model: Any, example: Any, repeats: int = 2) -> float:
    import torch

    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - start)
    return min(times)


def _inspect(model: Any, example: Any, shapes_first: bool) -> dict[str, Any]:
    from mlm_export import inspect_model

    with tempfile.TemporaryDirectory() as tmp, captured_probe(shapes_first) as seen, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspect_model(model, artifact_dir=tmp, example_input=example)
    return seen


#: The two probing paths: every probe a real forward ("before" fake tensors), and shapes first ("after").
PATHS = (("before", False), ("after", True))


def probing(repeats: int = 2, small: bool = False) -> list[dict[str, Any]]:
    """Rows: model, one forward (s), probes before/after in forwards, real runs, shape-only runs."""
    os.environ.pop("MLM_EXPORT_VERIFY_PROBES", None)
    start = time.perf_counter()
    importlib.import_module("torch._dynamo")  # the first meta run's one-time import, timed apart
    first_use = time.perf_counter() - start
    rows = []
    for name, factory in big_models(small).items():
        model, example = factory()
        forward = _forward_seconds(model, example)
        row: dict[str, Any] = {"model": name, "forward_s": forward, "meta_first_use_s": first_use}
        runs = {label: [_inspect(model, example, first) for _ in range(repeats)] for label, first in PATHS}
        # One unit for both paths: the fastest real forward at the base size seen in this process (a path's own
        # base run varies with what ran before it, which would give the two paths different units).
        unit = min([forward] + [r["base_s"] for path_runs in runs.values() for r in path_runs])
        row["unit_s"] = unit
        for label, path_runs in runs.items():
            best = min(path_runs, key=lambda r: r["seconds"])
            row[f"{label}_probe_s"] = best["seconds"]
            row[f"{label}_base_run_s"] = best["base_s"]
            # the base run inside probe() is the one real forward at the base size; the rest is probing
            row[f"{label}_probes_in_forwards"] = min(r["seconds"] - r["base_s"] for r in path_runs) / unit
            row[f"{label}_real_runs"] = best["result"].runs
            row[f"{label}_shape_runs"] = best["result"].shape_runs
        rows.append(row)
    return rows


#: Absolute resolution of the memory comparison (see the module docstring).
RESOLUTION_BYTES = 64 * 1024


def within_target(row: dict[str, Any]) -> bool:
    """Predicted within +-25 % of measured, or within :data:`RESOLUTION_BYTES` of it."""
    predicted, measured = row["predicted"], row["measured"]
    if predicted is None:
        return False
    return 0.75 <= predicted / measured <= 1.25 or abs(predicted - measured) <= RESOLUTION_BYTES


def measured_peak(backend: Any, shapes: Any) -> int:
    """Weights + inputs + peak live bytes of torch's CPU allocator during one real forward (profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    runner = backend.runner
    runner.module.eval()
    tensors = runner.make_inputs(shapes)
    inputs = sum(t.numel() * t.element_size() for t in tensors)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        runner.call(tensors)
    raw = prof.profiler.kineto_results.events()  # allocations and frees, in order ("[memory]" records)
    events = sorted((e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]")
    live = peak = 0
    for _start, change in events:
        live += change
        peak = max(peak, live)
    return backend.weights + inputs + peak


def memory(small: bool = False) -> list[dict[str, Any]]:
    """Rows: model, predicted bytes, measured bytes, ratio."""
    import torch
    from torch_truth import CASES

    os.environ.pop("MLM_EXPORT_VERIFY_PROBES", None)
    cases = [(c.name, lambda c=c: (c.factory(**c.kwargs), c.export_kwargs())) for c in CASES]
    cases += [(n, lambda f=f: (f()[0], {"example_input": f()[1]})) for n, f in big_models(small).items()]
    rows = []
    for name, factory in cases:
        torch.manual_seed(0)
        model, kwargs = factory()
        from mlm_export import inspect_model

        with tempfile.TemporaryDirectory() as tmp, captured_probe(True) as seen, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inspect_model(model, artifact_dir=tmp, **kwargs)
        backend, result = seen["backend"], seen["result"]
        base = [tuple(s if s > 0 else 1 for s in shape) for shape in result.input_shapes]
        base = list(backend.activations)[0] if backend.activations else base  # the base run's shapes
        predicted = backend.predict(base)
        measured = measured_peak(backend, base)
        rows.append({"model": name, "predicted": predicted, "measured": measured,
                     "ratio": predicted / measured if predicted else float("nan")})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("probing", "memory"))
    args = parser.parse_args()
    if args.only != "memory":
        for row in probing():
            print(row)
    if args.only != "probing":
        for row in memory():
            print(f"{row['model']:<45} {row['predicted'] / 2**20:>9.2f} MiB {row['measured'] / 2**20:>9.2f} MiB "
                  f"{row['ratio']:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
