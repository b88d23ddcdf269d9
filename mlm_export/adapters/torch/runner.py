"""Run a PyTorch model: device resolution, dry-run state, measuring outputs, loading and running published artifacts."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from mlm_export.adapters.torch.boundary import _compiling, _first_line
from mlm_export.adapters.torch.inputs import (
    _call_structure,
    _embedding_high,
    _float_dtype,
    _forward_parameters,
    _InputPlan,
    _Inputs,
    _tensors_of,
    data_type_of,
)
from mlm_export.adapters.torch.meta import TorchProbeBackend, all_finite
from mlm_export.adapters.torch.sources import _load_path, _Loaded
from mlm_export.dryrun import DryRunLimits
from mlm_export.errors import (
    ConfigurationError,
    DryRunLimitError,
    ProbeError,
)
from mlm_export.policy import FORWARD_ERRORS, memory_error, missing_device, out_of_memory
from mlm_export.probing import MeasuredTensor, ProbeInput
from mlm_export.tensors import ELEMENT_OF

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions


_SEED = 0


def _resolve_device(spec: Any) -> torch.device:
    if spec is None:
        spec = "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"device={spec!r} is not a device torch understands ({_first_line(exc)}).",
            hint="Use 'cpu', 'cuda', 'cuda:N' or a torch.device.",
        ) from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise missing_device(
                spec,
                f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})",
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigurationError(
                f"device={spec!r}: there are only {count} CUDA device(s) (indices 0..{count - 1}).",
                hint="Pick an index below the device count.",
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise missing_device(spec, "MPS is not available", choices="'cpu', 'cuda', 'cuda:N', 'mps'")
        return device
    raise ConfigurationError(
        f"device={spec!r}: device type {device.type!r} is not supported for the dry-run.",
        hint="Use 'cpu', 'cuda', 'cuda:N' or 'mps'.",
    )


def _accelerator(loaded: _Loaded) -> dict[str, Any]:
    """The accelerator the artifact itself requires; nothing when it can run anywhere.

    Where the dry-run ran says nothing about where the model can run: MLM's ``amd64`` means "will not use an
    accelerator" and an absent value means "may use whatever is there". Weights (state_dict, safetensors) are not
    bound to a device; a TorchScript or ``.pt2`` graph that names a CUDA device (traced on a GPU) is.
    """
    graph = None
    with contextlib.suppress(AttributeError, RuntimeError):
        if loaded.kind == "torchscript":
            graph = str(loaded.module.inlined_graph)
        elif loaded.kind == "exported":
            graph = str(loaded.program.graph)
    if graph is not None and re.search(r"\bcuda(:\d+)?\b", graph):
        kind = "TorchScript" if loaded.kind == "torchscript" else "torch.export"
        return {
            "accelerator": "cuda",
            "accelerator_constrained": True,
            "accelerator_summary": f"the {kind} graph places tensors on a CUDA device",
        }
    return {}


def _single_device(module: nn.Module) -> torch.device | None:
    devices = {t.device for t in _tensors_of(module)}
    if not devices:
        return None
    if len(devices) > 1:
        raise ConfigurationError(
            f"The model's tensors lie on several devices ({', '.join(sorted(str(d) for d in devices))}).",
            hint="Move the whole model to one device (model.to('cpu')) before exporting it.",
        )
    device = devices.pop()
    if device.type == "meta":
        raise ConfigurationError(
            "The model's weights are on the 'meta' device: there are no values to run or publish.",
            hint="Load real weights (e.g. load_state_dict(..., assign=True)) before exporting.",
        )
    return device


@contextlib.contextmanager
def _eval_mode(module: nn.Module, *, switch: bool = True) -> Iterator[None]:
    """``eval()`` the module, then restore every submodule's own training flag (Lightning's _ModuleMode)."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        if switch:
            module.eval()
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode


@contextlib.contextmanager
def _dry_run_state(module: nn.Module, device: torch.device, *, switch_mode: bool = True) -> Iterator[None]:
    """Eval mode on ``device`` for the dry-run; the training flags and the original device come back after."""
    original = _single_device(module)
    moved = original is not None and original != device
    with _eval_mode(module, switch=switch_mode):
        try:
            if moved:
                module.to(device)
            yield
        finally:
            if moved:
                module.to(original)


class _Runner:
    """Runs the module on random inputs of the shapes asked for and measures what comes out."""

    def __init__(self, module: Any, inputs: _Inputs, device: torch.device) -> None:
        self.module = module
        self.inputs = inputs
        self.device = device
        self.calls = 0
        self.peak_bytes: int | None = None

    def make_inputs(
        self, shapes: Sequence[tuple[int, ...]], device: Any = None, seed: int = _SEED
    ) -> list[torch.Tensor]:
        """Tensors of ``shapes``: the example itself where the shape matches, else seeded random values."""
        device = device if device is not None else self.device
        generator = torch.Generator().manual_seed(seed)
        tensors = []
        for plan, shape in zip(self.inputs.plans, shapes, strict=True):
            shape = tuple(int(s) for s in shape)
            if plan.example is not None and tuple(plan.example.shape) == shape and seed == _SEED:
                tensor = plan.example
            elif plan.dtype == torch.bool:  # another seed: other values (all True)
                tensor = torch.zeros(shape, dtype=torch.bool) if seed == _SEED else torch.ones(shape, dtype=torch.bool)
            elif plan.dtype.is_floating_point or plan.dtype.is_complex:
                tensor = torch.randn(shape, generator=generator, dtype=plan.dtype)
            else:
                high = max(plan.high, plan.low + 1)
                tensor = torch.randint(plan.low, high, shape, generator=generator, dtype=plan.dtype)
            tensors.append(tensor.to(device))
        return tensors

    def call(self, tensors: Sequence[torch.Tensor]) -> Any:
        """Call the module the way its inputs are passed (positional, keywords or one dict)."""
        args, kwargs = _call_structure(self.inputs, tensors)
        return self.module(*args, **kwargs)

    def __call__(self, shapes: Sequence[tuple[int, ...]]) -> list[MeasuredTensor]:
        return self.measure(self.make_inputs(shapes))

    def measure(self, tensors: Sequence[torch.Tensor]) -> list[MeasuredTensor]:
        """Run the module on ``tensors`` and measure its outputs (values kept for comparisons)."""
        first = self.calls == 0
        self.calls += 1
        with torch.inference_mode():
            result = self.call(tensors)
        measured: list[MeasuredTensor] = []
        _flatten(result, "", measured)
        if first and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        return measured


def _flatten(value: Any, prefix: str, out: list[MeasuredTensor]) -> None:
    """Flatten a forward's result: tensors, tuples/lists (output_0...), dicts (keys), nested (joined names)."""
    if isinstance(value, torch.Tensor):
        out.append(_measure(prefix or "output", value))
        return
    if isinstance(value, Mapping):
        for key, entry in value.items():
            _flatten(entry, f"{prefix}.{key}" if prefix else str(key), out)
        return
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        for key in value._fields:
            _flatten(getattr(value, key), f"{prefix}.{key}" if prefix else key, out)
        return
    if isinstance(value, (tuple, list)):
        for index, entry in enumerate(value):
            _flatten(entry, f"{prefix}.{index}" if prefix else f"output_{index}", out)
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _flatten(getattr(value, item.name), f"{prefix}.{item.name}" if prefix else item.name, out)
        return
    out.append(
        MeasuredTensor(
            name=prefix or "output",
            shape=(),
            data_type="other",
            kind="other",
            description=f"a {type(value).__name__}, not a tensor",
        )
    )


def _measure(name: str, tensor: torch.Tensor) -> MeasuredTensor:
    shape = tuple(int(s) for s in tensor.shape)
    description = None
    if not shape:
        shape = (1,)
        description = "A 0-d tensor (scalar), described as shape [1]."
    data_type = data_type_of(tensor.dtype)
    if data_type == "other":
        extra = f"The tensor's dtype is {tensor.dtype} (MLM has no such data type)."
        description = f"{description} {extra}" if description else extra
    non_finite = False
    fake = tensor.is_meta  # a shape-only run has no values to check
    floating = tensor.is_floating_point() or tensor.is_complex()
    if floating and not fake and tensor.layout == torch.strided and tensor.numel():
        non_finite = not all_finite(tensor)
    return MeasuredTensor(
        name, shape, data_type, non_finite=non_finite, description=description, scalar=tensor.dim() == 0,
        values=None if fake else tensor.detach(),
    )  # fmt: skip


def _runnable(loaded: _Loaded, device: torch.device) -> tuple[Any, bool]:
    """The module to run and whether it supports eval() (an ExportedProgram's module does not)."""
    if loaded.kind != "exported":
        return loaded.module, True
    program = loaded.program
    devices = {t.device for t in program.state_dict.values() if isinstance(t, torch.Tensor)}
    if devices and devices != {device}:
        with _compiling(f"Moving the ExportedProgram to {device}"):
            program = move_to_device_pass(copy.deepcopy(program), device)
    with _compiling("Unlifting the ExportedProgram (ExportedProgram.module())"):
        return program.module(), False


def load_artifact(path: str | os.PathLike[str], artifact_type: str, options: ExportOptions) -> Any:
    """Load a published PyTorch artifact as a module on ``options.load.device`` (for :mod:`mlm_export.loading`).

    The file is opened exactly as :func:`describe` opens it: ``weights_only`` unless ``options.load.trust_pickle``,
    ``options.load.model_class`` for weights files, ``torch.jit.load`` / ``torch.export.load`` for compiled ones.

    Args:
        path: the artifact file.
        artifact_type: its ``mlm:artifact_type``: it decides how the file is read (never the file's name, which may
            be a cache entry's checksum), and the file's content must fit it.
        options: ``model_class``/``model_kwargs``, ``trust_pickle`` and ``device``.

    Returns:
        An ``nn.Module`` in eval mode (an ``ExportedProgram``'s unlifted module for ``torch.export.save``).

    Raises:
        ConfigurationError: ``model_class`` is needed but missing, or the device is not available.
        ArtifactLoadError: the file is corrupt or does not fit ``model_class``.
        UntrustedPickleError: the file needs arbitrary unpickling and ``trust_pickle`` is False.

    .. versionadded:: 0.1
    """
    device = _resolve_device(options.load.device)
    loaded = _load_path(Path(path), options, artifact_type)
    module, _can_eval = _runnable(loaded, device)
    if loaded.kind != "exported":
        module.to(device)
        module.eval()
    return module


def run_artifact(
    model: Any, inputs: Sequence[tuple[str, tuple[int, ...], str]], options: ExportOptions
) -> list[MeasuredTensor]:
    """Run ``model`` once on seeded inputs of the given ``(name, shape, data_type)`` and measure its tensor outputs.

    Inputs are passed by keyword when the forward names all of them, else by position in the given order.

    Raises:
        ProbeError: the forward fails on these inputs.
        DryRunMemoryError: the run failed to allocate memory (policy.out_of_memory).

    .. versionadded:: 0.1
    """
    device = _resolve_device(options.load.device)
    keywords = {p.name for p in _forward_parameters(model) if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    by_keyword = len(inputs) > 1 and all(name in keywords for name, _, _ in inputs)
    plans = []
    for name, _shape, data_type in inputs:
        # "other" is a float type MLM has no name for (bfloat16...): feed the dtype the model's weights have.
        dtype = _float_dtype(model) if data_type == "other" else getattr(torch, ELEMENT_OF.get(data_type, "float32"))
        plan = _InputPlan(name=name, dtype=dtype, keyword=name if by_keyword else None)
        if not dtype.is_floating_point and not dtype.is_complex:
            plan.high = _embedding_high(model)
        plans.append(plan)
    shapes = [tuple(int(s) for s in shape) for _, shape, _ in inputs]
    probe_inputs = [ProbeInput(p.name, s, data_type_of(p.dtype)) for p, s in zip(plans, shapes, strict=True)]
    runner = _Runner(model, _Inputs(plans, probe_inputs, shapes), device)
    weights = sum(t.numel() * t.element_size() for t in {id(t): t for t in _tensors_of(model)}.values())
    backend = TorchProbeBackend(runner, weights, DryRunLimits.of(options), _flatten)
    switch = not isinstance(model, torch.fx.GraphModule)  # an unlifted ExportedProgram has no train/eval
    with _dry_run_state(model, device, switch_mode=switch), torch.random.fork_rng(devices=[]):
        try:
            with backend.timed("of the check"):
                measured = backend.run(shapes)
        except DryRunLimitError:
            raise
        except (*FORWARD_ERRORS, MemoryError) as exc:
            shown = ", ".join(f"{n}{list(s)}" for (n, _, _), s in zip(inputs, shapes, strict=True))
            if out_of_memory(exc):  # torch.OutOfMemoryError, MemoryError, the CPU allocator's RuntimeError
                hint = "Run on a device with more memory, or check the item's input shapes."
                raise memory_error(exc, f"{shown} on {device}", hint=hint) from exc
            raise ProbeError(
                f"The model's forward failed on inputs {shown}: {_first_line(exc)}",
                hint="Check that the item's mlm:input matches the model.",
            ) from exc
    return [m for m in measured if m.kind == "tensor"]
