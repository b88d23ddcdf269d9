"""Framework-neutral dry-run and dynamic-dimension search.

An adapter supplies a *runner*: a callable that takes one concrete shape per model input, runs the real model on
inputs of those shapes and returns what came out (:class:`MeasuredTensor`). :func:`probe` calls it a few times:

* once at the base shapes (batch 1, height/width 64, time 8 unless the caller fixed them);
* batch: once more at batch 2. If that works the batch dimension is dynamic (-1);
* spatial (height/width together) and temporal dimensions: at base + 32 and base + 64. If both work the dimension
  is dynamic. Because both probes are multiples of 32 apart, a net that needs sizes divisible by 32 (a U-Net with
  five poolings) is reported dynamic; a third probe at an odd size tells whether any size works, and when it does
  not, the input's description says which multiple is required. A net fixed at one size (a ViT at 224) fails the
  probes and keeps its size.
* an output dimension that changed between runs follows a dynamic input dimension and becomes -1.

Dimension names come from the input *layout*, chosen by rank unless the caller says otherwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from mlm_export.errors import ConfigurationError, ProbeError

#: Layout of an input by rank: tabular [B, C], sequence [B, T, C], image [B, C, H, W], image-time [B, T, C, H, W].
LAYOUT_BY_RANK: dict[int, str] = {2: "tabular", 3: "sequence", 4: "image", 5: "image-time"}
LAYOUTS: dict[str, tuple[str, ...]] = {
    "tokens": ("batch", "token"),
    "tabular": ("batch", "channel"),
    "sequence": ("batch", "time", "channel"),
    "image": ("batch", "channel", "height", "width"),
    "image-time": ("batch", "time", "channel", "height", "width"),
}
#: Axes of each layout that are probed together (a group either grows or not).
PROBE_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "tokens": {"token": ("token",)},
    "tabular": {},
    "sequence": {"time": ("time",)},
    "image": {"spatial": ("height", "width")},
    "image-time": {"time": ("time",), "spatial": ("height", "width")},
}
DEFAULT_SIZES = {"batch": 1, "height": 64, "width": 64, "time": 8, "token": 16}
PROBE_STEPS = (32, 64)
#: Largest dry-run input (elements per tensor, 1 GiB of float32): bigger shapes are refused before allocating.
MAX_PROBE_ELEMENTS = 2**28
ODD_STEP = 7


@dataclass(frozen=True)
class MeasuredTensor:
    """One output of a real run: ``data_type`` uses MLM names; ``kind`` is ``tensor`` or ``other`` (non-tensor)."""

    name: str
    shape: tuple[int, ...]
    data_type: str
    kind: str = "tensor"
    non_finite: bool = False
    description: str | None = None
    #: A 0-d tensor, described as shape [1] (MLM shapes need one dimension) with dim_order ["value"].
    scalar: bool = False


@dataclass(frozen=True)
class ProbeInput:
    """A model input to probe: ``shape`` holds sizes, with -1 (or None) where a default size should be used."""

    name: str
    shape: tuple[int, ...]
    data_type: str
    layout: str | None = None
    dim_order: tuple[str, ...] | None = None
    fixed: tuple[bool, ...] | None = None

    def resolved_layout(self) -> str | None:
        """The layout given, else by rank; an integer [B, N] input is read as token ids (tokens layout)."""
        if self.layout is not None:
            return self.layout
        if len(self.shape) == 2 and self.data_type.startswith(("int", "uint")):
            return "tokens"
        return LAYOUT_BY_RANK.get(len(self.shape))

    def resolved_dim_order(self) -> tuple[str, ...]:
        """The dim_order given, else the layout's, else generic names."""
        if self.dim_order is not None:
            return tuple(self.dim_order)
        layout = self.resolved_layout()
        if layout is not None and len(LAYOUTS[layout]) == len(self.shape):
            return LAYOUTS[layout]
        return generic_dim_order(len(self.shape))


@dataclass(frozen=True)
class ProbeResult:
    """Shapes after probing: inputs and outputs with -1 for dynamic dims, plus the runs and notes made."""

    input_shapes: tuple[tuple[int, ...], ...]
    input_dim_orders: tuple[tuple[str, ...], ...]
    outputs: tuple[MeasuredTensor, ...]
    runs: int
    notes: tuple[str, ...] = ()
    input_notes: dict[int, str] = field(default_factory=dict)


class TensorLike(Protocol):
    """Anything with a shape and an MLM data type (MeasuredTensor, OutputSpec)."""

    shape: tuple[int, ...]
    data_type: str


Runner = Callable[[Sequence[tuple[int, ...]]], Sequence[MeasuredTensor]]

_GENERIC_NAMES = ("batch", "channel", "height", "width", "depth", "x", "y", "z")


def generic_dim_order(rank: int) -> tuple[str, ...]:
    """Names for a tensor whose layout is unknown: batch first, then generic axis names."""
    if rank <= len(_GENERIC_NAMES):
        return _GENERIC_NAMES[:rank]
    letters = "abcdefghijklmnopqrstuvwxyz"
    return _GENERIC_NAMES + tuple(f"axis-{letters[i]}" for i in range(rank - len(_GENERIC_NAMES)))


def output_dim_order(
    shape: Sequence[int], input_layouts: Sequence[str | None], input_dim_orders: Sequence[Sequence[str]] = ()
) -> tuple[str, ...]:
    """dim_order of an output: [batch, class], [batch, class, height, width], [batch, time, channel]...

    An output of the same rank as an input whose axes were named after its first layer (Conv1d [batch, channel,
    time], Conv3d [batch, channel, time, height, width], a time-major RNN [time, batch, channel]) keeps that
    input's axis order, with the channel axis of a spatial map named ``class``.
    """
    rank = len(shape)
    for order in input_dim_orders:
        default = LAYOUTS.get(LAYOUT_BY_RANK.get(len(order), ""))
        # A token axis is kept only where the output follows the number of tokens (a per-token output): a pooled
        # [batch, N] output of a token model is a class (or feature) axis.
        per_token = "token" not in order or shape[list(order).index("token")] == -1
        if len(order) == rank and tuple(order) != default and "bands" not in order and per_token:
            if "height" in order:
                return tuple("class" if d == "channel" else d for d in order)
            return tuple(order)
    image_like = any(layout in ("image", "image-time") for layout in input_layouts)
    if rank == 1:
        return ("batch",)
    if rank == 2:
        return ("batch", "class")
    if rank == 3:
        return ("batch", "height", "width") if image_like else ("batch", "time", "channel")
    if rank == 4:
        return ("batch", "class", "height", "width")
    if rank == 5:
        return ("batch", "time", "class", "height", "width")
    return generic_dim_order(rank)


def infer_output_task(out: MeasuredTensor | TensorLike) -> str | None:
    """The task of one output (by its shape), or None for non-tensor outputs."""
    # The dtype does not change what an output means: a bfloat16 ("other") map is as segmentation as a float32 one.
    if getattr(out, "kind", "tensor") != "tensor":
        return None
    shape = out.shape
    order = tuple(getattr(out, "dim_order", ()) or ())
    if "class" in order and "height" in order:
        return "semantic-segmentation" if shape[order.index("class")] != 1 else "regression"
    if len(shape) in (4, 5) and shape[-3] != 1:
        return "semantic-segmentation"
    if len(shape) == 2 and shape[1] != 1 and (not order or "class" in order):
        return "classification"
    return "regression"


def _base_shape(spec: ProbeInput) -> tuple[int, ...]:
    names = spec.resolved_dim_order()
    shape = []
    for size, name in zip(spec.shape, names, strict=True):
        if size is None or size < 0:
            if name not in DEFAULT_SIZES:
                raise ProbeError(
                    f"input {spec.name!r}: dimension {name!r} is dynamic (-1) and has no default size.",
                    hint="Give a concrete size for it in input_shape (or pass example_input).",
                )
            size = DEFAULT_SIZES[name]
        shape.append(int(size))
    return tuple(shape)


def _describe_shapes(shapes: Sequence[tuple[int, ...]]) -> str:
    return ", ".join(str(list(s)) for s in shapes)


def probe(
    runner: Runner,
    inputs: Sequence[ProbeInput],
    *,
    probe_dynamic: bool = True,
    base_shapes: Sequence[tuple[int, ...]] | None = None,
) -> ProbeResult:
    """Run the model at the base shapes, then search which dimensions are dynamic.

    Args:
        runner: executes the model on inputs of the given shapes.
        inputs: the model inputs; a -1 in a shape means "use the default size and probe it".
        probe_dynamic: when False, run once and mark only the caller's -1 dimensions as dynamic.
        base_shapes: concrete shapes of a caller's example input (overrides the defaults).

    Raises:
        ProbeError: the base run fails (the message names the shapes tried and the original error), or the
            outputs change in number between runs.
    """
    dim_orders = [spec.resolved_dim_order() for spec in inputs]
    base = [tuple(s) for s in base_shapes] if base_shapes is not None else [_base_shape(s) for s in inputs]
    for spec, shape in zip(inputs, base, strict=True):
        if math.prod(shape) > MAX_PROBE_ELEMENTS:
            raise ConfigurationError(
                f"input_shape: input {spec.name!r} of shape {list(shape)} has {math.prod(shape):,} elements, too "
                f"many for a dry-run (at most {MAX_PROBE_ELEMENTS:,}).",
                hint="Give a small example size (e.g. batch 1 and 64x64 pixels); -1 marks dynamic dimensions.",
            )
    runs = 0

    def run(shapes: list[tuple[int, ...]]) -> list[MeasuredTensor]:
        nonlocal runs
        runs += 1
        return list(runner(shapes))

    try:
        base_outputs = run(base)
    except ProbeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of a user's forward is reported, with its shapes
        raise ProbeError(
            f"The model's forward failed on inputs of shape {_describe_shapes(base)}: {type(exc).__name__}: {exc}",
            hint="Pass example_input= or input_shape= with shapes the model accepts.",
        ) from exc
    if not base_outputs:
        raise ProbeError(
            "The model returned no tensor output.", hint="Return a tensor, tuple, list or dict of tensors."
        )
    if any(o.non_finite for o in base_outputs):
        names = ", ".join(o.name for o in base_outputs if o.non_finite)
        warnings.warn(f"The dry-run produced NaN or inf values in output(s) {names}.", RuntimeWarning, stacklevel=2)

    dynamic_inputs = [[False] * len(s) for s in base]
    dynamic_outputs = [[False] * len(o.shape) for o in base_outputs]
    notes: list[str] = []
    input_notes: dict[int, str] = {}

    for index, spec in enumerate(inputs):
        for axis, size in enumerate(spec.shape):
            if size is not None and size < 0:
                dynamic_inputs[index][axis] = True

    def caller_fixed(index: int, axis: int) -> bool:
        spec = inputs[index]
        if spec.fixed is not None:
            return spec.fixed[axis]
        return base_shapes is None and spec.shape[axis] is not None and spec.shape[axis] >= 0

    def try_shapes(changes: dict[tuple[int, int], int]) -> list[MeasuredTensor] | None:
        shapes = [list(s) for s in base]
        for (index, axis), size in changes.items():
            shapes[index][axis] = size
        try:
            outputs = run([tuple(s) for s in shapes])
        except Exception:  # noqa: BLE001 - a failed probe only means the dimension is not dynamic
            return None
        if len(outputs) != len(base_outputs):
            return None
        return outputs

    def mark_outputs(outputs: list[MeasuredTensor]) -> None:
        for o_index, (before, after) in enumerate(zip(base_outputs, outputs, strict=True)):
            if len(before.shape) != len(after.shape):
                continue
            for axis, (a, b) in enumerate(zip(before.shape, after.shape, strict=True)):
                if a != b:
                    dynamic_outputs[o_index][axis] = True

    if probe_dynamic:
        groups: dict[str, list[tuple[int, int]]] = {"batch": []}
        for index, order in enumerate(dim_orders):
            layout = inputs[index].resolved_layout()
            if "batch" in order:
                groups["batch"].append((index, order.index("batch")))
            for group, names in PROBE_GROUPS.get(layout or "", {}).items():
                for name in names:
                    if name in order:
                        groups.setdefault(group, []).append((index, order.index(name)))
        for group, axes in groups.items():
            axes = [(i, a) for i, a in axes if not caller_fixed(i, a) or dynamic_inputs[i][a]]
            if not axes:
                continue
            steps = (1,) if group == "batch" else PROBE_STEPS
            results = [try_shapes({(i, a): base[i][a] + step for i, a in axes}) for step in steps]
            if all(r is not None for r in results):
                for i, a in axes:
                    dynamic_inputs[i][a] = True
                for outputs in results:
                    mark_outputs(outputs)  # type: ignore[arg-type]
                if group != "batch" and try_shapes({(i, a): base[i][a] + ODD_STEP for i, a in axes}) is None:
                    multiple = math.gcd(*[base[i][a] for i, a in axes], *PROBE_STEPS)
                    for i, a in axes:
                        input_notes[i] = (
                            f"{'/'.join(dim_orders[i][ax] for ii, ax in axes if ii == i)} must be multiples of "
                            f"{multiple} (probed sizes {base[i][a]}, {base[i][a] + 32}, {base[i][a] + 64} ran; "
                            f"{base[i][a] + ODD_STEP} did not)."
                        )
            else:
                for i, a in axes:
                    if dynamic_inputs[i][a]:
                        warnings.warn(
                            f"input {inputs[i].name!r}: dimension {dim_orders[i][a]!r} was given as -1 but the model "
                            f"failed at other sizes; it is kept dynamic as asked.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                if group == "batch":
                    notes.append("The model failed at batch size 2; the batch dimension is fixed.")

    input_shapes = tuple(
        tuple(-1 if dyn else size for size, dyn in zip(shape, dynamic_inputs[i], strict=True))
        for i, shape in enumerate(base)
    )
    outputs = tuple(
        replace(o, shape=tuple(-1 if dyn else size for size, dyn in zip(o.shape, dynamic_outputs[k], strict=True)))
        for k, o in enumerate(base_outputs)
    )
    return ProbeResult(input_shapes, tuple(dim_orders), outputs, runs, tuple(notes), input_notes)
