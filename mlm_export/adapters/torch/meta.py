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
allocates: it is counted while that op runs (:func:`conv_workspace_bytes`), and so are the copies a oneDNN
convolution makes of its input and output in blocked layouts (channels padded to 8 or 16). Scratch space that other
kernels keep to themselves (oneDNN's LSTM: tens of KiB; cuDNN's workspaces) is not predicted. TorchScript modules
run on meta the same way (their parameters are swapped too).

Before each real run :meth:`TorchProbeBackend.check_memory` adds to that peak the second input set of an
extra-slices run and the outputs of earlier runs still alive (:func:`~mlm_export.dryrun.live_bytes`); a model no
meta run can predict is guessed from its input bytes (:data:`~mlm_export.dryrun.UNPREDICTED_INPUT_FACTOR`).

Tensor attributes a forward caches on its modules during a meta run (a grid, a mask) are put back afterwards, so
the real runs never see a meta tensor.

The same dispatch mode answers common ops with :mod:`~mlm_export.adapters.torch.shape_rules` (exact output shapes,
dtypes and strides, no Python meta kernel), which makes a meta forward of a ResNet-50 about ten times cheaper. Every
other op runs torch's meta kernel; the first Python one in a process imports sympy and ``torch._dynamo``. A model
whose inputs are all [batch, features] makes *light* runs (:func:`light_runs_needed`): rules and C++ kernels only,
composites decomposed under the mode, and a :class:`ShapeInferenceUnavailable` before any Python kernel, so that
its probes run for real instead of paying that import for one batch-2 forward.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mlm_export.dryrun import (
    DryRunLimits,
    RunPrediction,
    available_memory,
    check_memory,
    live_bytes,
    memory_budget,
    time_limit,
)
from mlm_export.probing import MeasuredTensor, ShapeInferenceUnavailable

if TYPE_CHECKING:
    import torch

#: The ops :func:`conv_workspace_bytes` looks at, every overload (``conv2d.default``, ``convolution.default``...).
_CONV_OPS = frozenset({"convolution", "conv1d", "conv2d", "conv3d"})
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


def _live_bytes_mode(device_type: str = "cpu", *, track: bool = True, light: bool = False) -> Any:
    """The dispatch mode of a meta run: shape rules first, and the peak of live storage bytes with ``track``.

    Ops in :mod:`~mlm_export.adapters.torch.shape_rules`' table get their output from a rule; any other op runs
    torch's meta kernel. ``light`` (a model whose meta run must not import sympy and ``torch._dynamo``): an op outside
    the table whose meta kernel is Python raises :class:`ShapeInferenceUnavailable` before it runs, and a composite
    op is decomposed under the mode so that its parts are looked at too. With ``track``, the bytes of the live
    storages the ops create are counted (reference counting frees them as in a real forward); a convolution that
    the real device runs with torch's unfused CPU kernels also counts its column buffer
    (:func:`conv_workspace_bytes`) while it runs: the meta kernel allocates only the output.
    """
    return _mode_class()(device_type, track=track, light=light)


@functools.cache
def _mode_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    from mlm_export.adapters.torch.shape_rules import fast_result

    class MetaRun(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            # True wraps __torch_dispatch__ in torch._disable_dynamo, whose first call imports torch._dynamo (1 s)
            # and which costs a few microseconds per op: nothing compiles inside a meta run.
            return False

        def __init__(self, device_type: str, *, track: bool, light: bool) -> None:
            super().__init__()
            self.device_type, self.track, self.light = device_type, track, light
            self.live: dict[int, tuple[Any, int]] = {}
            self.current = 0
            self.peak = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = fast_result(func, args, kwargs)
            if out is None:
                out = _light_call(self, func, args, kwargs) if self.light else func(*args, **kwargs)
            if self.track:
                _count_live(self, func, args, kwargs, out)
            return out

    return MetaRun


def _light_call(mode: Any, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Run ``func`` in a light meta run: C++ meta kernels run, composites decompose under ``mode``, Python stops."""
    from mlm_export.adapters.torch.shape_rules import meta_kernel_kind

    kind = meta_kernel_kind(func)
    if kind == "composite":
        with mode:
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
    elif kind == "c++":
        return func(*args, **kwargs)
    raise ShapeInferenceUnavailable(
        f"{func.name()} has a Python meta kernel (its first use imports sympy and torch._dynamo)"
    )


def _count_live(mode: Any, func: Any, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Count the storages ``out`` creates, forget the freed ones, and raise ``mode.peak`` to the live total."""
    torch = _import_torch()
    from torch.multiprocessing.reductions import StorageWeakRef

    for key in [key for key, (ref, _size) in mode.live.items() if ref.expired()]:
        mode.current -= mode.live.pop(key)[1]
    for tensor in (out,) if isinstance(out, torch.Tensor) else torch.utils._pytree.tree_leaves(out):
        if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided:
            storage = tensor.untyped_storage()
            if storage._cdata not in mode.live:  # an in-place op returns a storage counted already
                mode.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                mode.current += storage.nbytes()
    convolution = _op_name(func) in _CONV_OPS
    workspace = conv_workspace_bytes(func, args, kwargs, out, mode.device_type) if convolution else 0
    mode.peak = max(mode.peak, mode.current + workspace)


def _op_name(func: Any) -> str:
    """``conv2d`` for ``aten.conv2d.padding``: the op's name without namespace and overload."""
    return getattr(func, "__name__", "").split(".")[0]


def _conv_arguments(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """(input, weight, bias, stride, padding, dilation, transposed, groups) of a convolution op, else None."""
    from mlm_export.adapters.torch.shape_rules import bind_arguments, per_axis

    if _op_name(func) not in _CONV_OPS:
        return None
    bound = bind_arguments(func, args, kwargs)  # defaults from the op's schema (conv2d: stride [1, 1]...)
    if bound is None:
        return None
    weight = bound["weight"]
    rank = weight.dim() - 2
    padding = bound["padding"]
    if isinstance(padding, str):  # the conv*d.padding overloads: "valid" is none, "same" half the kernel
        padding = [0 if padding == "valid" else k // 2 for k in weight.shape[2:]]
    axes = [per_axis(value, rank) for value in (bound["stride"], padding, bound["dilation"])]
    if None in axes or type(bound["groups"]) is not int:
        return None
    return (bound["input"], weight, bound["bias"], *axes, bool(bound.get("transposed", False)), bound["groups"])


def conv_workspace_bytes(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, device_type: str) -> int:
    """Bytes of the scratch buffers a CPU convolution allocates beside its output.

    Which kernel runs depends on the shapes (oneDNN for most; the unfused ``Slow2d``/``Slow3d``/``SlowDilated``
    kernels for small inputs with batch 1, for instance), so torch itself is asked, on stride-0 CPU tensors of the
    real shapes (no memory). The unfused kernels' column buffer (im2col) holds ``C_in / groups x prod(kernel) x
    prod(output spatial)`` elements per image (``SlowDilated``: one image at a time); a 1x1, stride-1, unpadded
    ``Slow2d`` needs none. oneDNN (``Mkldnn``) reorders input, output and weight into blocked layouts whose channels
    are padded to the vector width (16 with AVX-512, else 8): measured with torch 2.9's allocator, a 3->8 channel
    3x3 convolution on 3000x3000 pixels holds 2x its output besides it; the count (the three blocked copies) is an
    upper bound of that. Other devices (cuDNN) keep their scratch space outside the count: 0.
    """
    torch = _import_torch()
    select = getattr(torch._C, "_select_conv_backend", None)
    conv = _conv_arguments(func, args, kwargs or {}) if device_type == "cpu" and select is not None else None
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
    if backend == backends.Mkldnn:
        return _onednn_copies(data, weight, out)
    kernel = tuple(weight.shape[2:])
    pointwise = set(kernel) == {1} and set(stride) == {1} and not any(padding)
    if backend not in unfused or (backend == backends.Slow2d and pointwise):
        return 0
    images = data.shape[0] if unfused[backend] == "batch" else 1
    columns = images * (data.shape[1] // groups) * math.prod(kernel) * math.prod(out.shape[2:])
    return int(columns * data.element_size())


def _onednn_copies(data: Any, weight: Any, out: Any) -> int:
    """Bytes of oneDNN's blocked copies of a convolution's input, output and weight (channels padded to a block)."""
    torch = _import_torch()
    block = 16 if "AVX512" in str(torch.backends.cpu.get_cpu_capability()) else 8

    def padded(tensor: Any, channels: int) -> int:
        if tensor.dim() < 2 or not tensor.shape[channels]:
            return int(tensor.numel() * tensor.element_size())
        size = tensor.shape[channels]
        return int(tensor.numel() // size * -(-size // block) * block * tensor.element_size())

    return padded(data, 1) + padded(out, 1) + padded(weight, 0)


def _modules_of(module: Any) -> list[Any]:
    torch = _import_torch()
    return list(module.modules()) if isinstance(module, torch.nn.Module) else []


def _attributes(modules: Sequence[Any]) -> dict[int, dict[str, Any]]:
    """A shallow copy of each submodule's attributes, by the id of the submodule."""
    return {id(sub): dict(vars(sub)) for sub in modules}


@functools.cache
def _tensor_class(kind: type) -> bool:
    return issubclass(kind, _import_torch().Tensor)


def _restore_attributes(module: Any, before: dict[int, dict[str, Any]]) -> None:
    """Put back the attributes that a meta forward set to meta tensors (a cache that was None is None again)."""
    for sub in _modules_of(module):  # again: the forward may have added submodules
        owner = vars(sub)
        if not any(map(_tensor_class, set(map(type, owner.values())))):
            continue
        old = before.get(id(sub), {})
        for name in [name for name, value in owner.items() if _tensor_class(type(value)) and value.is_meta]:
            if name in old:
                owner[name] = old[name]
            else:
                del owner[name]


@contextlib.contextmanager
def _weights_on_meta(modules: Sequence[Any], metas: dict[int, tuple[Any, Any]]) -> Iterator[None]:
    """Swap every parameter and buffer of ``modules`` for a meta tensor of the same shape (tied ones stay tied).

    Restored afterwards. ``metas`` (id of a tensor -> (the tensor, its meta twin)) keeps the twins for the next run
    of the same module.
    """
    torch = _import_torch()
    swapped: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for sub in modules:
            for owner in (sub._parameters, sub._buffers):
                for name, tensor in list(owner.items()):
                    if tensor is None or tensor.is_meta:
                        continue
                    known = metas.get(id(tensor))
                    if known is None or known[0] is not tensor:
                        meta = torch.empty_like(tensor, device="meta")
                        known = metas[id(tensor)] = (tensor, torch.nn.Parameter(meta, tensor.requires_grad) if
                                                     isinstance(tensor, torch.nn.Parameter) else meta)  # fmt: skip
                    swapped.append((owner, name, tensor))
                    owner[name] = known[1]
        yield
    finally:
        for owner, name, tensor in reversed(swapped):
            owner[name] = tensor


def light_runs_needed(ranks: Sequence[int]) -> bool:
    """Whether meta runs must keep off torch's Python meta kernels (see :func:`_live_bytes_mode`'s ``light``).

    The first use of a Python meta kernel costs a one-time import: ``torch._check`` (in ``meta_mm`` and most
    others) imports ``torch.fx.experimental.symbolic_shapes`` and sympy (0.4-0.7 s), and ``torch._refs`` ops are
    wrapped by ``_disable_dynamo``, which imports ``torch._dynamo`` (another 1 s): together about as long as
    ``import torch``. Worth it when an input has more than two axes (spatial, time or token axes, whose real probes
    are forwards at larger sizes), or when ``torch._dynamo`` is loaded already. A [batch, features] model's only
    probe is one more forward at batch 2 (~0.1 s for a 1 GiB MLP): its meta runs use the shape rules and C++ meta
    kernels only, and one that needs a Python kernel stops and is probed with real forwards.
    """
    return "torch._dynamo" not in sys.modules and all(rank <= 2 for rank in ranks)


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
        #: Meta runs keep off Python meta kernels; see :func:`light_runs_needed`.
        self.light = light_runs_needed([len(p.shape) for p in runner.inputs.probe_inputs])
        self.weights = weights
        self.limits = limits
        self.flatten = flatten
        self.activations: dict[tuple[tuple[int, ...], ...], int] = {}
        self._shapes_failed = False
        self._metas: dict[int, tuple[Any, Any]] = {}
        #: Weak references to the output values of the real runs (alive while the caller keeps them).
        self._outputs: list[Any] = []

    def infer(self, shapes: Sequence[tuple[int, ...]]) -> list[MeasuredTensor]:
        """Outputs of a forward on the meta device at ``shapes`` (the first one also records its memory peak)."""
        return self._meta_run(shapes, track=not self.activations)

    def _meta_run(self, shapes: Sequence[tuple[int, ...]], *, track: bool) -> list[MeasuredTensor]:
        """A meta forward; with ``track``, the peak of live activation bytes is recorded for ``shapes``."""
        torch = _import_torch()
        module = self.runner.module
        modules = _modules_of(module)
        before = _attributes(modules)
        tracker = _live_bytes_mode(self.runner.device.type, track=track, light=self.light)
        try:
            with _weights_on_meta(modules, self._metas), torch.inference_mode(), tracker:
                tensors = [
                    torch.empty(tuple(shape), dtype=plan.dtype, device="meta")
                    for plan, shape in zip(self.runner.inputs.plans, shapes, strict=True)
                ]
                result = self.runner.call(tensors)
            measured: list[MeasuredTensor] = []
            self.flatten(result, "", measured)
        except ShapeInferenceUnavailable:
            self._shapes_failed = self._shapes_failed or self.light  # a light run stops at the same op every time
            raise
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
        if key not in self.activations and not self._shapes_failed:
            try:
                self._meta_run(shapes, track=True)
            except Exception:  # noqa: BLE001 - no prediction; the real run will tell
                self._shapes_failed = True
        activations = self.activations.get(key)
        return None if activations is None else self.weights + activations

    def prediction(self, shapes: Sequence[tuple[int, ...]], *, keep: bool = False) -> RunPrediction:
        """What a real run at ``shapes`` will hold at its peak.

        The meta run's peak (inputs, activations, outputs and convolution scratch), the second input set of an
        extra-slices run (``keep``), and the outputs of earlier runs still alive.
        """
        predicted = self.predict(shapes)
        inputs = sum(_input_bytes(p.dtype, s) for p, s in zip(self.runner.inputs.plans, shapes, strict=True))
        activations = None if predicted is None else predicted - self.weights
        held = live_bytes(self._outputs)
        return RunPrediction(self.weights, activations, inputs if keep else 0, held, inputs)

    def check_memory(self, shapes: Sequence[tuple[int, ...]], *, keep: bool = False) -> None:
        """Refuse a real run at ``shapes`` whose predicted peak is over the budget (DryRunMemoryError)."""
        prediction = self.prediction(shapes, keep=keep)
        budget = memory_budget(self.limits, self.weights, self._free_memory())
        shown = ", ".join(str(list(s)) for s in shapes)
        check_memory(prediction, budget, f"at input shapes {shown}", given=self.limits.max_memory is not None)

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
        self.check_memory(shapes, keep=keep is not None)
        tensors = self.runner.make_inputs(shapes)
        if keep is not None:
            others = self.runner.make_inputs(shapes, seed=1)
            for tensor, other, kept in zip(tensors, others, keep, strict=True):
                region = tuple(slice(0, int(k)) for k in kept)
                other[region] = tensor[region]
            tensors = others
        measured = self.runner.measure(tensors)
        self._outputs = [ref for ref in self._outputs if ref() is not None]
        self._outputs.extend(weakref.ref(m.values) for m in measured if m.values is not None)
        return measured

    def same_values(self, first: MeasuredTensor, second: MeasuredTensor) -> bool:
        """Equal shapes and values up to a few units of the dtype's rounding (NaN equals NaN)."""
        return same_tensor_values(first.values, second.values)

    def timed(self, what: str) -> Any:
        """The dry-run's wall-clock limit, as a context manager."""
        return time_limit(self.limits.timeout, what)


#: Elements compared or checked at a time, so that checking a large output needs a few MiB, not copies of it.
CHUNK_ELEMENTS = 2**20


def _flat_chunks(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """Slices of ``tensor`` flattened (a view when contiguous), ``CHUNK_ELEMENTS`` at a time."""
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        yield flat[start : start + CHUNK_ELEMENTS]


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether a floating-point tensor holds no NaN or inf, checked in chunks (no tensor-sized mask)."""
    torch = _import_torch()
    return all(bool(torch.isfinite(chunk).all()) for chunk in _flat_chunks(tensor))


def same_tensor_values(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether two output tensors hold the same values (``None`` on either side: unknown, counted as different).

    Compared chunk by chunk in float64 (complex128), so the check needs a few MiB whatever the outputs' size.
    """
    torch = _import_torch()
    if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not (a.is_floating_point() or a.is_complex()):
        return bool(torch.equal(a, b))
    wide = torch.complex128 if a.is_complex() else torch.float64
    eps = torch.finfo(a.real.dtype if a.is_complex() else a.dtype).eps
    scale = 0.0
    for chunk in _flat_chunks(a):
        scale = max(scale, float(chunk.cpu().to(wide).abs().nan_to_num(0, 0, 0).max()))
    atol = 16 * eps * (1 + scale)
    return all(
        torch.allclose(x.cpu().to(wide), y.cpu().to(wide), rtol=0, atol=atol, equal_nan=True)
        for x, y in zip(_flat_chunks(a), _flat_chunks(b), strict=True)
    )


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
