"""A measured ``mlm:batch_size_suggestion`` (opt-in: ``export_item(..., suggest_batch_size=True)``).

On the dry-run device, forward passes are timed at batch 1, 2, 4, ... (one warm-up and :data:`TIMED_RUNS` timed
runs each, the median kept) until the memory budget is reached, a doubling would pass it, an out-of-memory error
stops it, or throughput gains less than 5 % over two doublings. The suggestion is the smallest batch reaching
90 % of the best measured throughput.

Memory per batch: on CUDA ``torch.cuda.max_memory_allocated`` during the warm-up (above what was allocated before);
on the CPU the bytes of every module output (the activations) plus the inputs, summed by forward hooks
(TorchScript takes no hooks: inputs and final outputs only, a lower bound).
The default budget is 80 % of the free CUDA memory (``torch.cuda.mem_get_info``), or half of the available RAM.

What was measured goes next to the suggestion, in ``mlm:hyperparameters`` (not ``mlm:accelerator*``, which say
what the caller or the artifact states): ``batch_size.samples_per_second`` (at the suggestion),
``batch_size.device``, ``batch_size.input_shape``, ``batch_size.throughput`` (samples/s by batch) and
``batch_size.memory_budget``.

.. versionadded:: 0.2
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlm_export.description import ModelDescription
from mlm_export.errors import ConfigurationError, ProbeError
from mlm_export.policy import out_of_memory

TIMED_RUNS = 3
#: Suggest the smallest batch reaching this share of the best throughput.
GOOD_ENOUGH = 0.90
#: Stop doubling when two doublings gain less than this.
MIN_GAIN = 0.05
MAX_BATCH = 4096
#: Share of free CUDA memory / available RAM the default budget allows.
CUDA_HEADROOM = 0.8
RAM_HEADROOM = 0.5
#: Size of a dynamic non-batch dimension when there is no example input.
DEFAULT_DYNAMIC_SIZE = 64
#: Prefix of the ``mlm:hyperparameters`` keys that record the measurement.
KEY = "batch_size"


class BudgetExceededError(ProbeError):
    """Batch 1 already needs more memory than the budget."""


@dataclass
class BatchSizeResult:
    """Throughput (samples/s) by batch size, the suggestion, and why the search stopped."""

    throughput: dict[int, float] = field(default_factory=dict)
    memory: dict[int, int] = field(default_factory=dict)
    #: Median seconds of the timed forwards, by batch.
    seconds: dict[int, float] = field(default_factory=dict)
    stopped: str = ""

    @property
    def suggestion(self) -> int:
        """The smallest batch reaching :data:`GOOD_ENOUGH` of the best throughput."""
        best = max(self.throughput.values())
        return min(b for b, t in self.throughput.items() if t >= GOOD_ENOUGH * best)


def search_batch_size(
    run: Callable[[int], int],
    *,
    budget: int,
    is_oom: Callable[[BaseException], bool] = lambda _: False,
    forward: Callable[[int], object] | None = None,
) -> BatchSizeResult:
    """Time ``run(batch)`` (which returns the bytes that batch needed) at 1, 2, 4, ... and apply the stopping rule.

    Args:
        run: runs one forward pass at ``batch`` and returns the memory it needed, in bytes (the warm-up).
        budget: bytes the search may use.
        is_oom: whether an exception is an out-of-memory error (then the search stops there).
        forward: the timed forward pass at ``batch``, run after ``run(batch)`` (default: ``run``); it may reuse
            what the warm-up prepared (the inputs) and skip the memory measurement.

    Raises:
        BudgetExceededError: batch 1 alone needs more than ``budget`` (or runs out of memory).
    """
    result = BatchSizeResult()
    batch = 1
    while batch <= MAX_BATCH:
        try:
            need = run(batch)  # warm-up, measuring memory
            if need > budget:
                result.stopped = f"batch {batch} needs {need} bytes, over the budget of {budget}"
                if batch == 1:
                    raise BudgetExceededError(
                        f"Batch size 1 needs {need} bytes, more than the memory budget of {budget} bytes.",
                        hint="Raise memory_budget= (--memory-budget), or measure on a device with more memory.",
                    )
                break
            times = []
            for _ in range(TIMED_RUNS):
                start = time.perf_counter()
                (forward or run)(batch)
                times.append(time.perf_counter() - start)
        except BudgetExceededError:
            raise
        except Exception as exc:
            if not is_oom(exc):
                raise
            if batch == 1:
                raise BudgetExceededError(
                    f"Batch size 1 ran out of memory ({str(exc).splitlines()[0][:200]}).",
                    hint="Measure on a device with more memory.",
                ) from exc
            result.stopped = f"out of memory at batch {batch}"
            break
        result.memory[batch] = need
        result.seconds[batch] = statistics.median(times)
        result.throughput[batch] = batch / max(result.seconds[batch], 1e-9)
        quarter = result.throughput.get(batch // 4)
        if quarter is not None and batch >= 4 and result.throughput[batch] < (1 + MIN_GAIN) * quarter:
            result.stopped = f"less than {MIN_GAIN:.0%} more throughput from batch {batch // 4} to {batch}"
            break
        if 2 * need > budget:
            result.stopped = f"batch {2 * batch} would need about {2 * need} bytes, over the budget of {budget}"
            break
        batch *= 2
    else:
        result.stopped = f"reached batch {MAX_BATCH}"
    return result


def default_budget(device: Any) -> int:
    """80 % of the free CUDA memory on a CUDA device, else half of the available RAM."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_HEADROOM)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 * 2**30
    return int(available * RAM_HEADROOM)


def _input_shapes(described: ModelDescription, example: Any) -> list[tuple[tuple[int, ...], str]]:
    """Per-input ``(shape at batch 1, data_type)``: the example's sizes, else the measured ones (-1 -> 64)."""
    import torch

    examples = [example] if isinstance(example, torch.Tensor) else list(example or ())
    shapes = []
    for index, spec in enumerate(described.inputs):
        given = examples[index] if index < len(examples) and isinstance(examples[index], torch.Tensor) else None
        shape = list(given.shape) if given is not None else [s if s != -1 else DEFAULT_DYNAMIC_SIZE for s in spec.shape]
        shape[0] = 1
        shapes.append((tuple(int(s) for s in shape), spec.data_type))
    return shapes


def _module_of(model: Any, described: ModelDescription, options: Any) -> Any:
    """The model as a torch module: the in-memory module, or the described PyTorch artifact loaded."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model
    artifact = next((a for a in described.artifacts if a.is_model and a.path), None)
    if described.framework != "PyTorch" or artifact is None:
        raise ConfigurationError(
            f"suggest_batch_size needs a PyTorch model; {described.framework or 'this model'} cannot be timed here.",
            hint="Pass the in-memory nn.Module, or leave suggest_batch_size off.",
        )
    from mlm_export.adapters.torch import load_artifact

    return load_artifact(artifact.path, str(artifact.artifact_type), options)


def _tensor_bytes(output: Any) -> int:
    import torch

    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, dict):
        return sum(_tensor_bytes(v) for v in output.values())
    if isinstance(output, (tuple, list)):
        return sum(_tensor_bytes(v) for v in output)
    return 0


def _activation_bytes(module: Any, inputs: list[Any]) -> int:
    """Bytes of the inputs and of every module's tensor outputs in one forward (the CPU memory estimate).

    TorchScript modules take no forward hooks: their estimate is the inputs and the final outputs only.
    """
    total = _tensor_bytes(inputs)
    handles = []

    def hook(_module: Any, _args: Any, output: Any) -> None:
        nonlocal total
        total += _tensor_bytes(output)

    try:
        for child in module.modules():
            handles.append(child.register_forward_hook(hook))
    except RuntimeError:  # "register_forward_hook is not supported on ScriptModules"
        for handle in handles:
            handle.remove()
        return total + _tensor_bytes(module(*inputs))
    try:
        module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


class BatchRunner:
    """Forward passes of ``module`` at a batch size: the warm-up measures memory, the timed runs only compute.

    ``runner(batch)`` (the warm-up) makes the random inputs of that batch once, runs the forward pass with the
    memory measurement (:func:`_activation_bytes` on the CPU, the CUDA peak on CUDA) and returns the bytes needed;
    ``runner.forward(batch)`` runs the bare forward pass on those same inputs (synchronized on CUDA), so that the
    timed runs measure the model, not input generation or hooks.
    """

    def __init__(self, module: Any, shapes: list[tuple[tuple[int, ...], str]], device: Any) -> None:
        self.module = module
        self.shapes = shapes
        self.device = device
        self._inputs: tuple[int, list[Any]] | None = None

    def inputs(self, batch: int) -> list[Any]:
        """The inputs at ``batch`` (made once per batch size; seeded, so the same every time)."""
        import torch

        from mlm_export.tensors import ELEMENT_OF

        if self._inputs is not None and self._inputs[0] == batch:
            return self._inputs[1]
        generator = torch.Generator(device="cpu").manual_seed(0)
        inputs = []
        for shape, data_type in self.shapes:
            dtype = getattr(torch, ELEMENT_OF.get(data_type, "float32"))
            size = (batch, *shape[1:])
            tensor = torch.rand(size, generator=generator) if dtype.is_floating_point else torch.zeros(size)
            inputs.append(tensor.to(device=self.device, dtype=dtype))
        self._inputs = (batch, inputs)
        return inputs

    def __call__(self, batch: int) -> int:
        """The warm-up at ``batch``: one forward pass; the bytes it needed."""
        import torch

        inputs = self.inputs(batch)
        with torch.inference_mode():
            if self.device.type != "cuda":
                return _activation_bytes(self.module, inputs)
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.module(*inputs)
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - before

    def forward(self, batch: int) -> None:
        """One bare forward pass at ``batch`` (after the warm-up made its inputs)."""
        import torch

        inputs = self.inputs(batch)
        with torch.inference_mode():
            self.module(*inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)


def measured_batch_size(
    model: Any, described: ModelDescription, options: Any, *, memory_budget: int | None = None
) -> ModelDescription:
    """``described`` with a measured ``batch_size_suggestion`` and the measurement in its hyperparameters.

    Raises:
        ConfigurationError: a bad budget, a non-PyTorch model, or an input without a dynamic batch dimension.
        BudgetExceededError: batch 1 already exceeds the budget.
    """
    import torch

    from mlm_export.adapters.torch.runner import _dry_run_state, _resolve_device

    if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(memory_budget, int)
                                      or memory_budget <= 0):  # fmt: skip
        raise ConfigurationError(f"memory_budget={memory_budget!r} is not a positive number of bytes.")
    if any(spec.shape[0] != -1 for spec in described.inputs):
        raise ConfigurationError(
            "suggest_batch_size: the model's batch dimension is fixed, so no batch size can be suggested.",
            hint="Leave suggest_batch_size off for models with a fixed batch size.",
        )
    device = _resolve_device(options.load.device)
    module = _module_of(model, described, options)
    budget = memory_budget or default_budget(device)
    shapes = _input_shapes(described, options.probe.example_input)
    with _dry_run_state(module, device):
        runner = BatchRunner(module, shapes, device)
        result = search_batch_size(runner, budget=budget, is_oom=out_of_memory, forward=runner.forward)
    suggestion = result.suggestion
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    record = {
        f"{KEY}.samples_per_second": round(result.throughput[suggestion], 3),
        f"{KEY}.device": f"{device} ({name})",
        f"{KEY}.input_shape": [list(shape) for shape, _ in shapes],
        f"{KEY}.throughput": {str(b): round(t, 3) for b, t in result.throughput.items()},
        f"{KEY}.memory_budget": budget,
        f"{KEY}.stopped": result.stopped,
    }
    return described.replace(batch_size_suggestion=suggestion, hyperparameters={**described.hyperparameters, **record})


__all__ = [
    "BatchRunner",
    "BatchSizeResult",
    "BudgetExceededError",
    "default_budget",
    "measured_batch_size",
    "search_batch_size",
]
