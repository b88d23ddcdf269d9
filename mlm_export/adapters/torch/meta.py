"""PyTorch shape-only runs for probing, the dry-run memory prediction they give, and the probing backend.

A *meta* forward runs the module with its parameters and buffers swapped for ``meta`` tensors of the same shapes
(restored afterwards; nothing is copied) on ``meta`` inputs: every tensor carries a shape and dtype but no data and
no arithmetic is done, so a probe at batch 2 or 320 px costs a small fraction of a real forward and no memory.
(``FakeTensorMode`` would keep the device, but its first use imports ``torch._dynamo``: seconds.) A forward that
meta tensors cannot run (``.item()``, a CPU tensor made inside the forward, an op without a meta kernel) is run
for real, probe by probe. A tracking dispatch mode records the bytes of every storage the forward creates and
frees (reference counting frees them exactly as in a real forward), which gives the peak of live activation bytes:
with the weights, the predicted peak memory of the real run at the same shapes. A convolution that the CPU runs
with torch's unfused kernel (small batch-1 inputs) also needs a column buffer (im2col) that no meta kernel
allocates: it is counted while that op runs (:func:`conv_workspace_bytes`). Scratch space that other kernels keep
to themselves (oneDNN's LSTM: tens of KiB; cuDNN's workspaces) is not predicted.

Tensor attributes a forward caches on its modules during a meta run (a grid, a mask) are put back afterwards, so
the real runs never see a meta tensor.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mlm_export.dryrun import DryRunLimits, available_memory, check_memory, memory_budget, time_limit
from mlm_export.probing import MeasuredTensor, ShapeInferenceUnavailable

if TYPE_CHECKING:
    import torch

#: Words of an error message that mean "meta tensors cannot do this", not "the model refuses these shapes".
_UNAVAILABLE_WORDS = ("fake", "meta", "data-dependent", "data dependent", "symbolic", "unbacked", "cannot be called")


def _import_torch() -> Any:
    import torch

    return torch


def _unavailable(exc: BaseException) -> bool:
    """Whether a meta forward failed because meta tensors cannot run it (then the probe is run for real)."""
    if isinstance(exc, NotImplementedError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in _UNAVAILABLE_WORDS)


def _live_bytes_mode(device_type: str = "cpu") -> Any:
    """A dispatch mode that tracks the bytes of the live storages created by the ops it sees, and their peak.

    A convolution that the real device runs with torch's unfused CPU kernels also counts its column buffer
    (:func:`conv_workspace_bytes`) as live while it runs: the meta kernel allocates only the output.
    """
    torch = _import_torch()
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode

    class LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, tuple[Any, int]] = {}
            self.current = 0
            self.peak = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for key, (ref, size) in list(self.live.items()):
                if ref.expired():
                    self.current -= size
                    del self.live[key]
            for tensor in torch.utils._pytree.tree_leaves(out):
                if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided:
                    storage = tensor.untyped_storage()
                    ref = StorageWeakRef(storage)
                    if ref.cdata not in self.live:
                        self.live[ref.cdata] = (ref, storage.nbytes())
                        self.current += storage.nbytes()
            workspace = conv_workspace_bytes(func, args, kwargs, out, device_type)
            self.peak = max(self.peak, self.current + workspace)
            return out

    return LiveBytes()


def _conv_arguments(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """(input, weight, bias, stride, padding, dilation, transposed, groups) of a convolution op, else None."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation")
    if name == "convolution":
        values = dict(zip((*names, "transposed", "output_padding", "groups"), args, strict=False)) | kwargs
    elif name in ("conv1d", "conv2d", "conv3d"):
        values = dict(zip((*names, "groups"), args, strict=False)) | kwargs
    else:
        return None
    weight = values["weight"]
    rank = weight.dim() - 2

    def per_axis(value: Any, default: int) -> tuple[int, ...]:
        value = default if value is None else value
        return tuple(value) * (rank if len(value) == 1 else 1) if isinstance(value, (list, tuple)) else (value,) * rank

    padding = values.get("padding", 0)
    if isinstance(padding, str):  # "valid": none; "same": half the kernel
        padding = [0 if padding == "valid" else k // 2 for k in weight.shape[2:]]
    return (
        values["input"],
        weight,
        values.get("bias"),
        per_axis(values.get("stride"), 1),
        per_axis(padding, 0),
        per_axis(values.get("dilation"), 1),
        bool(values.get("transposed", False)),
        int(values.get("groups", 1)),
    )


def conv_workspace_bytes(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, device_type: str) -> int:
    """Bytes of the column buffer (im2col) that torch's unfused CPU convolution allocates beside its output.

    Which kernel runs depends on the shapes (oneDNN for most; the unfused ``Slow2d``/``Slow3d``/``SlowDilated``
    kernels for small inputs with batch 1, for instance), so torch itself is asked, on stride-0 CPU tensors of the
    real shapes (no memory). The buffer holds ``C_in / groups x prod(kernel) x prod(output spatial)`` elements per
    image (``SlowDilated``: one image at a time); a 1x1, stride-1, unpadded ``Slow2d`` needs none. Other devices
    and kernels (oneDNN, cuDNN) keep their scratch space outside the count: 0.
    """
    torch = _import_torch()
    select = getattr(torch._C, "_select_conv_backend", None)
    name = getattr(func, "__name__", "").split(".")[0]
    conv = _conv_arguments(name, args, kwargs or {}) if device_type == "cpu" and select is not None else None
    if conv is None or conv[6] or not isinstance(out, torch.Tensor) or conv[0].dim() != conv[1].dim():
        return 0  # not a convolution, another device, transposed, or an unbatched input
    data, weight, bias, stride, padding, dilation, _transposed, groups = conv
    backends = torch._C._ConvBackend
    unfused = {backends.Slow2d: "batch", backends.Slow3d: "batch", backends.SlowDilated2d: "image",
               backends.SlowDilated3d: "image"}  # fmt: skip
    flat = torch.empty(1, dtype=data.dtype)
    try:
        backend = select(flat.expand(data.shape), flat.expand(weight.shape), None if bias is None else
                         flat.expand(bias.shape), list(stride), list(padding), list(dilation), False,
                         [0] * len(stride), groups, None)  # fmt: skip
    except (RuntimeError, TypeError, ValueError):
        return 0
    kernel = tuple(weight.shape[2:])
    pointwise = set(kernel) == {1} and set(stride) == {1} and not any(padding)
    if backend not in unfused or (backend == backends.Slow2d and pointwise):
        return 0
    images = data.shape[0] if unfused[backend] == "batch" else 1
    columns = images * (data.shape[1] // groups) * math.prod(kernel) * math.prod(out.shape[2:])
    return int(columns * data.element_size())


def _tensor_attributes(module: Any) -> dict[tuple[int, str], Any]:
    torch = _import_torch()
    found = {}
    for sub in module.modules() if isinstance(module, torch.nn.Module) else ():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor):
                found[(id(sub), name)] = value
    return found


def _restore_attributes(module: Any, before: dict[tuple[int, str], Any]) -> None:
    """Put back tensor attributes that a meta forward replaced by meta tensors."""
    torch = _import_torch()
    for sub in module.modules() if isinstance(module, torch.nn.Module) else ():
        owner = vars(sub)
        for name, value in list(owner.items()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                if (id(sub), name) in before:
                    owner[name] = before[(id(sub), name)]
                else:
                    del owner[name]


@contextlib.contextmanager
def _weights_on_meta(module: Any) -> Iterator[None]:
    """Swap every parameter and buffer for a meta tensor of the same shape (tied ones stay tied), then restore."""
    torch = _import_torch()
    swapped: list[tuple[dict[str, Any], str, Any]] = []
    metas: dict[int, Any] = {}
    try:
        for sub in module.modules():
            for owner in (sub._parameters, sub._buffers):
                for name, tensor in list(owner.items()):
                    if tensor is None or tensor.is_meta:
                        continue
                    if id(tensor) not in metas:
                        meta = torch.empty_like(tensor, device="meta")
                        metas[id(tensor)] = torch.nn.Parameter(meta, tensor.requires_grad) if isinstance(
                            tensor, torch.nn.Parameter) else meta  # fmt: skip
                    swapped.append((owner, name, tensor))
                    owner[name] = metas[id(tensor)]
        yield
    finally:
        for owner, name, tensor in reversed(swapped):
            owner[name] = tensor


def shape_runs_worthwhile(ranks: Sequence[int]) -> bool:
    """Whether meta runs are worth their one-time cost.

    The first meta run pays for torch's Python meta kernels: ``torch._check`` (in ``meta_mm`` and most others)
    imports ``torch.fx.experimental.symbolic_shapes`` and sympy (0.4-0.7 s), and ``torch._refs`` ops (``relu``...)
    are wrapped by ``_disable_dynamo``, which imports ``torch._dynamo`` (another 1 s): together about as long as
    ``import torch``. ``FakeTensorMode`` and ``torch.device("meta")`` use the same kernels, so no shape-only path
    avoids it. For a [batch, features] MLP of 1 GiB the batch-2 forward costs ~0.1 s (about 2 batch-1 forwards:
    GEMM at 2 rows vs GEMV). They are worth it when that module is already loaded, or when an input has
    more than two axes (spatial, time or token axes, whose real probes are forwards at larger sizes). A
    [batch, features] model is probed with real forwards (one more, at batch 2) and its memory check counts weights
    and inputs only.
    """
    return "torch._dynamo" in sys.modules or any(rank > 2 for rank in ranks)


class TorchProbeBackend:
    """:class:`~mlm_export.probing.ProbeBackend` of a PyTorch module, with the dry-run's memory and time caps.

    Args:
        runner: the adapter's runner (makes seeded inputs, calls the module, measures its outputs).
        weights: bytes of the parameters and buffers (part of every predicted peak).
        limits: the dry-run's caps; the memory cap is checked before every real run.
        flatten: turns a forward's result into measured outputs.
    """

    def __init__(self, runner: Any, weights: int, limits: DryRunLimits, flatten: Any) -> None:
        self.runner = runner
        #: Use meta runs (probes, memory prediction); see :func:`shape_runs_worthwhile`.
        self.use_shapes = shape_runs_worthwhile([len(p.shape) for p in runner.inputs.probe_inputs])
        self.weights = weights
        self.limits = limits
        self.flatten = flatten
        self.activations: dict[tuple[tuple[int, ...], ...], int] = {}
        self._mode: Any = None
        self._shapes_failed = False

    def infer(self, shapes: Sequence[tuple[int, ...]]) -> list[MeasuredTensor]:
        """Outputs of a forward on the meta device at ``shapes`` (the first one also records its memory peak)."""
        return self._meta_run(shapes, track=not self.activations)

    def _meta_run(self, shapes: Sequence[tuple[int, ...]], *, track: bool) -> list[MeasuredTensor]:
        """A meta forward; with ``track``, the peak of live activation bytes is recorded for ``shapes``."""
        torch = _import_torch()
        module = self.runner.module
        if isinstance(module, torch.jit.ScriptModule):
            raise ShapeInferenceUnavailable("a TorchScript module keeps its weights where they are")
        before = _tensor_attributes(module)
        tracker = _live_bytes_mode(self.runner.device.type) if track else contextlib.nullcontext()
        try:
            with _weights_on_meta(module), torch.inference_mode(), tracker:
                tensors = [
                    torch.empty(tuple(shape), dtype=plan.dtype, device="meta")
                    for plan, shape in zip(self.runner.inputs.plans, shapes, strict=True)
                ]
                result = self.runner.call(tensors)
            measured: list[MeasuredTensor] = []
            self.flatten(result, "", measured)
        except Exception as exc:
            if _unavailable(exc):
                raise ShapeInferenceUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            _restore_attributes(module, before)
        if track:
            self.activations[_key(shapes)] = tracker.peak
        return measured

    def predict(self, shapes: Sequence[tuple[int, ...]]) -> int | None:
        """Predicted peak bytes of a real run at ``shapes`` (weights + live activations), None when unknown."""
        key = _key(shapes)
        bound = [v for k, v in self.activations.items() if _within(key, k)]
        if key not in self.activations and bound:  # no larger than shapes already predicted: their peak bounds it
            return self.weights + min(bound)
        if key not in self.activations and self.use_shapes and not self._shapes_failed:
            try:
                self._meta_run(shapes, track=True)
            except Exception:  # noqa: BLE001 - no prediction; the real run will tell
                self._shapes_failed = True
        activations = self.activations.get(key)
        return None if activations is None else self.weights + activations

    def check_memory(self, shapes: Sequence[tuple[int, ...]]) -> None:
        """Refuse a real run at ``shapes`` whose predicted peak is over the budget (DryRunMemoryError)."""
        predicted = self.predict(shapes)
        if predicted is None:
            predicted = self.weights + sum(_input_bytes(p.dtype, s) for p, s in zip(self.runner.inputs.plans,
                                                                                   shapes, strict=True))  # fmt: skip
        budget = memory_budget(self.limits, self.weights, self._free_memory())
        shown = ", ".join(str(list(s)) for s in shapes)
        check_memory(predicted, self.weights, budget, f"at input shapes {shown}",
                     given=self.limits.max_memory is not None)  # fmt: skip

    def _free_memory(self) -> int | None:
        device = self.runner.device
        if device.type == "cuda":
            torch = _import_torch()
            return int(torch.cuda.mem_get_info(device)[0])
        return available_memory() if device.type == "cpu" else None

    def run(
        self, shapes: Sequence[tuple[int, ...]], keep: Sequence[tuple[int, ...]] | None = None
    ) -> list[MeasuredTensor]:
        """A real run on seeded inputs; with ``keep``, other values beyond the leading ``keep`` slices."""
        self.check_memory(shapes)
        tensors = self.runner.make_inputs(shapes)
        if keep is not None:
            others = self.runner.make_inputs(shapes, seed=1)
            for tensor, other, kept in zip(tensors, others, keep, strict=True):
                region = tuple(slice(0, int(k)) for k in kept)
                other[region] = tensor[region]
            tensors = others
        return self.runner.measure(tensors)

    def same_values(self, first: MeasuredTensor, second: MeasuredTensor) -> bool:
        """Equal shapes and values up to a few units of the dtype's rounding (NaN equals NaN)."""
        return same_tensor_values(first.values, second.values)

    def timed(self, what: str) -> Any:
        """The dry-run's wall-clock limit, as a context manager."""
        return time_limit(self.limits.timeout, what)


def same_tensor_values(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether two output tensors hold the same values (``None`` on either side: unknown, counted as different)."""
    torch = _import_torch()
    if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not (a.is_floating_point() or a.is_complex()):
        return bool(torch.equal(a, b))
    a64, b64 = a.detach().cpu().to(torch.complex128 if a.is_complex() else torch.float64), b.detach().cpu()
    eps = torch.finfo(a.real.dtype if a.is_complex() else a.dtype).eps
    scale = float(a64.abs().nan_to_num(0, 0, 0).max()) if a.numel() else 0.0
    return bool(torch.allclose(a64, b64.to(a64.dtype), rtol=0, atol=16 * eps * (1 + scale), equal_nan=True))


def _within(small: tuple[tuple[int, ...], ...], large: tuple[tuple[int, ...], ...]) -> bool:
    """Whether every size of ``small`` is at most the matching size of ``large``."""
    return len(small) == len(large) and all(
        len(a) == len(b) and all(x <= y for x, y in zip(a, b, strict=True)) for a, b in zip(small, large, strict=True)
    )


def _key(shapes: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(s) for s in shape) for shape in shapes)


def _input_bytes(dtype: Any, shape: Sequence[int]) -> int:
    torch = _import_torch()
    size = 1
    for dim in shape:
        size *= int(dim)
    return size * (torch.empty((), dtype=dtype).element_size())
