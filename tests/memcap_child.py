"""Child process of the dry-run memory-cap test and benchmark: how far one dry-run's peak RSS rises over its cap.

``python memcap_child.py CASE SIZE CAP [CAP...]`` builds a small activation-dominated model (a 3->8 channel 3x3
convolution: 224 parameters) in a temporary folder, runs the same call once at 64x64 pixels (imports, kernels,
lazily loaded modules: the interpreter baseline), then for each cap resets the process's peak RSS
(``/proc/self/clear_refs``), runs the call at SIZE x SIZE pixels and records the peak RSS over the RSS before it.
It prints one JSON line: ``{"case", "size", "runs": [{"cap", "baseline", "added", "refused", "message"}]}``.

Cases: ``safetensors`` (weights file + ``model_class``), ``torchscript``, ``onnx`` (inspect_model of the file),
``extra-slices`` (an nn.Module whose output keeps only the first image: the batch's extra-slices check runs batch-2
forwards for real, two input sets and earlier outputs alive), ``unpredictable`` (a forward no meta run can follow:
every probe runs for real, batch 2 included), ``check-torch`` / ``check-onnx`` (check_item of an exported Item).
"""

from __future__ import annotations

import gc
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

CONV_KWARGS = {"in_channels": 3, "out_channels": 8, "kernel_size": 3}
CASES = ("safetensors", "torchscript", "onnx", "extra-slices", "unpredictable", "check-torch", "check-onnx")


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _modules() -> tuple[Any, Any]:
    import torch
    from torch import nn

    class FirstImage(nn.Module):
        """Keeps only the first image: the batch's extra slices do not change the output."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(**CONV_KWARGS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)[:1]

    class Unpredictable(nn.Module):
        """Reads a value (``.item()``): meta tensors cannot run it, so there is no shape-only prediction."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(**CONV_KWARGS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if float(x.flatten()[0]) > 1e30:
                raise ValueError("unexpected input")
            return self.conv(x)

    return FirstImage, Unpredictable


def _action(case: str, folder: Path) -> Any:
    """A function (size, cap) -> None running the case's dry-run."""
    import torch
    from safetensors.torch import save_file

    from mlm_export import check_item, export_item, inspect_model

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(**CONV_KWARGS)
    first_image, unpredictable = _modules()
    common: dict[str, Any] = {"artifact_dir": folder / "out"}
    if case == "safetensors":
        save_file(conv.state_dict(), folder / "conv.safetensors")
        source: Any = folder / "conv.safetensors"
        common |= {"model_class": "torch.nn:Conv2d", "model_kwargs": CONV_KWARGS}
    elif case == "torchscript":
        torch.jit.save(torch.jit.script(conv), folder / "conv.pt")
        source = folder / "conv.pt"
    elif case in ("onnx", "check-onnx"):
        torch.onnx.export(conv, (torch.randn(1, 3, 64, 64),), folder / "conv.onnx", input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}}, dynamo=False)  # fmt: skip
        source = folder / "conv.onnx"
    elif case == "extra-slices":
        source = first_image()
    elif case == "unpredictable":
        source = unpredictable()
    else:
        source = conv
    if not case.startswith("check-"):
        return lambda size, cap: inspect_model(source, input_shape=[-1, 3, size, size], max_dry_run_memory=cap,
                                               **common)  # fmt: skip
    items: dict[int, Any] = {}

    def check(size: int, cap: Any) -> None:
        if size not in items:  # exported before the peak is measured: only check_item's rerun is
            where = {"artifact_dir": folder / f"out{size}", "bbox": [0, 0, 1, 1], "datetime": "2020-01-01T00:00:00Z"}
            items[size] = export_item(source, input_shape=[1, 3, size, size], max_dry_run_memory=0, **where)
            (folder / f"item{size}.json").write_text(json.dumps(items[size].to_dict()))
            return
        kwargs = {"model_class": torch.nn.Conv2d, "model_kwargs": CONV_KWARGS} if case == "check-torch" else {}
        check_item(folder / f"item{size}.json", max_dry_run_memory=cap, **kwargs)

    return check


def measure(case: str, size: int, caps: list[int]) -> dict[str, Any]:
    """Warm up at 64x64, then for each cap the run at ``size`` and its peak RSS over the RSS before it."""
    import torch

    from mlm_export.errors import DryRunMemoryError

    torch.set_num_threads(2)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        action = _action(case, Path(tmp))
        action(64, None)
        if case.startswith("check-"):
            action(64, None)
            action(size, None)  # the export of the big Item, outside the measured run
        for cap in caps:
            gc.collect()
            baseline = _status("VmRSS")
            _reset_peak()
            refused, message = False, ""
            try:
                action(size, cap)
            except DryRunMemoryError as exc:
                refused, message = True, str(exc)
            added = _status("VmHWM") - baseline
            runs.append({"cap": cap, "baseline": baseline, "added": added, "refused": refused, "message": message})
    return {"case": case, "size": size, "runs": runs}


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), [int(c) for c in sys.argv[3:]])))
