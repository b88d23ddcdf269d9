"""Framework-neutral dry-run and dynamic-dimension search.

An adapter supplies a :class:`ProbeBackend`: ``infer`` gives the output shapes and dtypes for inputs of given
shapes without computing anything (PyTorch's fake/meta tensors, ONNX shape inference), ``run`` runs the real
model on seeded inputs and keeps the output values, ``same_values`` compares two outputs. :func:`probe`:

* asks ``infer`` for the outputs at the base shapes (batch 1, height/width 64, time 8, tokens 16 unless the
  caller fixed them), then probes each axis group on shapes alone: batch at 2; spatial (height/width together),
  time and token at base + 32 and base + 64, and, when both work, at base + 7 (a net that needs multiples of 32
  fails there, and the input's description says which multiple). A group that works at every probe size follows
  the input; an output dimension that changed with it follows it too. A probe whose shape-only run cannot decide
  (an op without a meta kernel, a data-dependent shape) is run for real instead, and the debug log says which
  path each probe took;
* runs the model for real once at the base shapes, for dtypes, NaN/Inf checks and the values compared later;
* decides, with real runs at the smallest sizes that decide it, whether the extra slices of each group that
  accepts other sizes change the output: two inputs of the same size that agree on the first slices and differ
  beyond them must give different outputs. When they do not (a change-detection net that reads ``x[:, 0]`` and
  ``x[:, 1]`` of a longer series), the dimension is fixed at its base size.

Dimension names come from the input *layout*, chosen by rank unless the caller says otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from mlm_export.errors import ConfigurationError, DryRunLimitError, ProbeError, first_line
from mlm_export.policy import memory_error, out_of_memory
from mlm_export.tensors import (
    LAYOUT_BY_RANK,
    LAYOUTS,
    TensorLike,
    generic_dim_order,
    infer_output_task,
    output_dim_order,
)

# Layouts, dim orders and output tasks live in mlm_export.tensors; they are re-exported here for the adapters.
__all__ = [
    "DEFAULT_SIZES",
    "LAYOUTS",
    "LAYOUT_BY_RANK",
    "MAX_PROBE_ELEMENTS",
    "VERIFY_ENV",
    "MeasuredTensor",
    "ProbeBackend",
    "ProbeInput",
    "ProbeResult",
    "ShapeInferenceUnavailable",
    "TensorLike",
    "base_shapes_of",
    "generic_dim_order",
    "infer_output_task",
    "measured_dim_orders",
    "output_dim_order",
    "probe",
    "verify_same",
    "warm_imports",
]

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
    #: The output's values (a real run only), for :meth:`ProbeBackend.same_values`; never compared or shown.
    values: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProbeInput:
    """A model input to probe: ``shape`` holds sizes, with -1 (or None) where a default size should be used."""

    name: str
    shape: tuple[int, ...]
    data_type: str
    layout: str | None = None
    dim_order: tuple[str, ...] | None = None
    #: Axes that are not probed (a size an ONNX graph fixes); -1 and the caller's sizes are probed.
    fixed: tuple[bool, ...] | None = None
    #: Axes the caller gave a size for (``input_shape``): where probing starts; a note says when one is dynamic.
    stated: tuple[bool, ...] | None = None

    def stated_axis(self, axis: int, *, base_given: bool) -> bool:
        """Whether the caller gave this axis a size: ``stated``, else a concrete size in ``shape`` (no example)."""
        if self.stated is not None:
            return self.stated[axis]
        size = self.shape[axis]
        return not base_given and size is not None and size >= 0

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
    #: Shape-only runs made (meta/fake tensors, ONNX shape inference).
    shape_runs: int = 0
    #: How each probe was decided, e.g. ``"spatial +32: shapes"`` or ``"batch 2: real (meta failed: ...)"``.
    paths: tuple[str, ...] = ()


Shapes = Sequence[tuple[int, ...]]


class ShapeInferenceUnavailable(Exception):  # a signal to fall back, not an error the user sees
    """A shape-only run cannot decide these shapes (an op without a meta kernel, a data-dependent shape)."""


class ProbeBackend(Protocol):
    """What :func:`probe` needs from a framework adapter."""

    def infer(self, shapes: Shapes) -> Sequence[MeasuredTensor]:
        """Outputs (shapes, dtypes) for inputs of ``shapes`` without running the model's arithmetic.

        Raises:
            ShapeInferenceUnavailable: shapes alone cannot tell (the probe is then run for real).
            Exception: anything else means the model does not accept these shapes.
        """
        ...

    def run(self, shapes: Shapes, keep: Shapes | None = None) -> Sequence[MeasuredTensor]:
        """Run the real model on seeded inputs of ``shapes``; outputs carry their ``values``.

        With ``keep``, the inputs equal those of ``run(shapes)`` on the leading ``keep`` slices of every axis and
        differ (other seeded values) everywhere else.
        """
        ...

    def same_values(self, first: MeasuredTensor, second: MeasuredTensor) -> bool:
        """Whether two outputs of real runs hold the same values (up to floating-point noise)."""
        ...


#: Set to 1 to run every probe both ways (shapes only, then real forwards only) and fail when they disagree.
VERIFY_ENV = "MLM_EXPORT_VERIFY_PROBES"
_log = logging.getLogger(__name__)
#: Errors that end the dry-run instead of meaning "this size is not accepted" (policy.py: out of memory is reported).
_STOP: tuple[type[BaseException], ...] = (DryRunLimitError,)


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


def _describe_shapes(shapes: Shapes) -> str:
    return ", ".join(str(list(s)) for s in shapes)


def base_shapes_of(inputs: Sequence[ProbeInput], base_shapes: Shapes | None = None) -> list[tuple[int, ...]]:
    """The shapes of the first run: the caller's example shapes, else the inputs' with default sizes for -1.

    Raises:
        ConfigurationError: an input is too large for a dry-run.
        ProbeError: a dynamic dimension has no default size.
    """
    base = [tuple(s) for s in base_shapes] if base_shapes is not None else [_base_shape(s) for s in inputs]
    for spec, shape in zip(inputs, base, strict=True):
        if math.prod(shape) > MAX_PROBE_ELEMENTS:
            raise ConfigurationError(
                f"input_shape: input {spec.name!r} of shape {list(shape)} has {math.prod(shape):,} elements, too "
                f"many for a dry-run (at most {MAX_PROBE_ELEMENTS:,}).",
                hint="Give a small example size (e.g. batch 1 and 64x64 pixels); -1 marks dynamic dimensions.",
            )
    return base


@dataclass
class _Group:
    """Input axes probed together (batch, spatial, time, token) and what probing found out about them."""

    name: str
    axes: list[tuple[int, int]]
    #: The model ran at every probe size.
    accepted: bool = False
    #: It also ran at base + ODD_STEP (any size works, not only multiples).
    odd_ok: bool = False
    #: Output axes (output index, axis) whose size changed with the group.
    followed: set[tuple[int, int]] = field(default_factory=set)
    #: The extra slices change the output (decided by an output following the group, or by real runs).
    used: bool = True

    def sizes(self, shapes: Shapes, size_of: Any) -> list[tuple[int, ...]]:
        """``shapes`` with each axis of the group set to ``size_of(base_size)``."""
        result = [list(s) for s in shapes]
        for index, axis in self.axes:
            result[index][axis] = int(size_of(result[index][axis]))
        return [tuple(s) for s in result]


class _Session:
    """Runs the backend for :func:`probe`: shape-only first, real when shapes alone cannot tell; counts and logs."""

    def __init__(self, backend: ProbeBackend, *, shapes_first: bool) -> None:
        self.backend = backend
        self.shapes_usable = shapes_first
        self.real_runs = 0
        self.shape_runs = 0
        self.paths: list[str] = []
        self._real: dict[Any, list[MeasuredTensor]] = {}
        self._importing: threading.Thread | None = None

    def log(self, label: str, path: str) -> None:
        self.paths.append(f"{label}: {path}")
        _log.debug("probe %s: %s", label, path)

    def real(self, shapes: Shapes, keep: Shapes | None = None) -> list[MeasuredTensor]:
        """A real run (the same shapes and ``keep`` are run once)."""
        key = (tuple(map(tuple, shapes)), tuple(map(tuple, keep)) if keep is not None else None)
        if key not in self._real:
            if not self.real_runs:
                self._importing = warm_imports(ITEM_MODULES)
            self.real_runs += 1
            try:
                self._real[key] = list(self.backend.run([tuple(s) for s in shapes], keep))
            except _STOP:
                raise
            except Exception as exc:  # out of memory is reported, never taken as "refused" (policy.py)
                if out_of_memory(exc):
                    hint = "Run on a device with more memory, or pass input_shape= with the dynamic sizes fixed."
                    raise memory_error(exc, f"of shape {_describe_shapes(shapes)}", hint=hint) from exc
                raise
        return self._real[key]

    def close(self) -> None:
        """Wait for the import thread (one still importing at exit aborted 1 ``inspect_model`` process in 60)."""
        if self._importing is not None:
            self._importing.join()

    def outputs(self, shapes: Shapes, label: str, expected: int | None = None) -> list[MeasuredTensor] | None:
        """Outputs for ``shapes`` (shape-only when possible), or None when the model does not accept them."""
        reason = ""
        if self.shapes_usable:
            self.shape_runs += 1
            try:
                outputs = list(self.backend.infer(shapes))
            except ShapeInferenceUnavailable as exc:
                reason = f" (shapes alone could not tell: {first_line(exc)})"
            except Exception as exc:  # noqa: BLE001 - the model refused these shapes
                self.log(label, f"shapes, refused ({type(exc).__name__}: {first_line(exc)})")
                return None
            else:
                self.log(label, "shapes")
                return outputs if expected is None or len(outputs) == expected else None
        try:
            outputs = self.real(shapes)
        except _STOP:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed probe only means the dimension is not dynamic
            self.log(label, f"real{reason}, refused ({type(exc).__name__}: {first_line(exc)})")
            return None
        self.log(label, f"real{reason}")
        return outputs if expected is None or len(outputs) == expected else None


#: Modules that build and validate the Item (pystac, jsonschema): imported beside the first real forward.
ITEM_MODULES = ("mlm_export.stac.builder", "mlm_export.stac.validate")


def warm_imports(names: Sequence[str]) -> threading.Thread | None:
    """Import ``names`` in a daemon thread (the caller joins it before returning); None when all are imported.

    A forward spends its time in native kernels that release the GIL, so the 0.05-0.1 s of Python that importing
    pystac and jsonschema takes runs beside the dry-run instead of after it. A failing import is left to the
    main thread, which imports the module again when it needs it and reports the error there.
    """
    missing = [name for name in names if name not in sys.modules]
    if not missing:
        return None

    def work() -> None:
        for name in missing:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=work, name="mlm-export-warm-imports", daemon=True)
    thread.start()
    return thread


def _base_outputs(session: _Session, base: Shapes) -> list[MeasuredTensor]:
    """Outputs at the base shapes (shape-only when possible) and the one real run there.

    Raises:
        ProbeError: the real run fails, or the model returns no output.
    """
    shaped = None
    if session.shapes_usable:
        session.shape_runs += 1
        try:
            shaped = list(session.backend.infer(base))
            session.log("base", "shapes")
        except Exception as exc:  # noqa: BLE001 - shapes alone do not work for this model: every probe runs for real
            session.shapes_usable = False
            session.log("base", f"real (shapes alone could not run: {type(exc).__name__}: {first_line(exc)})")
    try:
        real = session.real(base)
    except ProbeError:
        raise
    except Exception as exc:  # any error of a user's forward is reported, with its shapes
        raise ProbeError(
            f"The model's forward failed on inputs of shape {_describe_shapes(base)}: {type(exc).__name__}: {exc}",
            hint="Pass example_input= or input_shape= with shapes the model accepts.",
        ) from exc
    if not real:
        raise ProbeError(
            "The model returned no tensor output.", hint="Return a tensor, tuple, list or dict of tensors."
        )
    if shaped is not None and [(o.shape, o.kind) for o in shaped] != [(o.shape, o.kind) for o in real]:
        session.shapes_usable = False  # the shape-only run disagrees with the real one: trust only real runs
        session.log("base", "real (the shape-only outputs differ from the real ones)")
    return real


def _groups(inputs: Sequence[ProbeInput]) -> list[_Group]:
    """The axis groups to probe: batch over every input, then each layout's spatial/time/token axes."""
    axes_by_group: dict[str, list[tuple[int, int]]] = {"batch": []}
    for index, spec in enumerate(inputs):
        order = spec.resolved_dim_order()
        if "batch" in order:
            axes_by_group["batch"].append((index, order.index("batch")))
        for group, names in PROBE_GROUPS.get(spec.resolved_layout() or "", {}).items():
            for name in names:
                if name in order:
                    axes_by_group.setdefault(group, []).append((index, order.index(name)))
    groups = []
    for name, axes in axes_by_group.items():
        probed = [(i, a) for i, a in axes if _caller_dynamic(inputs[i], a) or not _fixed(inputs[i], a)]
        if probed:
            groups.append(_Group(name, probed))
    return groups


def _caller_dynamic(spec: ProbeInput, axis: int) -> bool:
    size = spec.shape[axis]
    return size is not None and size < 0


def _fixed(spec: ProbeInput, axis: int) -> bool:
    """An axis not probed: one the source fixes (``fixed``). A size the caller gave is where probing starts."""
    return spec.fixed[axis] if spec.fixed is not None else False


def _follow(base_outputs: Sequence[MeasuredTensor], outputs: Sequence[MeasuredTensor], group: _Group) -> None:
    """Record the output axes whose size differs from the base run's."""
    for o_index, (before, after) in enumerate(zip(base_outputs, outputs, strict=True)):
        if len(before.shape) == len(after.shape):
            pairs = enumerate(zip(before.shape, after.shape, strict=True))
            group.followed |= {(o_index, a) for a, (x, y) in pairs if x != y}


def _probe_sizes(session: _Session, group: _Group, base: Shapes, base_outputs: Sequence[MeasuredTensor]) -> None:
    """Whether the group accepts other sizes (batch + 1; base + 32, + 64 and + 7 for the others)."""
    steps = (1,) if group.name == "batch" else PROBE_STEPS
    count = len(base_outputs)
    for step in steps:
        outputs = session.outputs(group.sizes(base, lambda s, step=step: s + step), f"{group.name} +{step}", count)
        if outputs is None:
            return
        _follow(base_outputs, outputs, group)
    group.accepted = True
    if group.name != "batch":
        odd = session.outputs(group.sizes(base, lambda s: s + ODD_STEP), f"{group.name} +{ODD_STEP}", count)
        group.odd_ok = odd is not None


def _multiple(group: _Group, base: Shapes) -> int:
    return math.gcd(*[base[i][a] for i, a in group.axes], *PROBE_STEPS)


def _decision_candidates(group: _Group, base: Shapes) -> list[tuple[Any, Any]]:
    """(keep, grown) size functions, smallest first: tiny accepted sizes, then base and base + a probed step."""
    unit = 1 if group.odd_ok else _multiple(group, base)
    smallest = min(base[i][a] for i, a in group.axes)
    candidates: list[tuple[Any, Any]] = [
        ((lambda _s, n=n: n), (lambda _s, n=n + unit: n)) for n in sorted({unit, 8 * unit, 32 * unit})
        if n + unit <= smallest
    ]  # fmt: skip
    step = ODD_STEP if group.odd_ok else PROBE_STEPS[0]
    candidates.append(((lambda s: s), (lambda s, step=step: s + step)))
    return candidates


def _extra_slices_matter(session: _Session, group: _Group, base: Shapes) -> bool:
    """Whether the group's extra slices change the output, from real runs at the smallest sizes that decide it.

    The kept size must run, and two inputs of the grown size that agree on the kept slices and differ beyond them
    must give different outputs.
    """
    for index, (keep_size, grown_size) in enumerate(_decision_candidates(group, base)):
        keep, grown = group.sizes(base, keep_size), group.sizes(base, grown_size)
        label = f"{group.name} extra slices ({_describe_shapes(keep)} kept of {_describe_shapes(grown)})"
        try:
            if keep != [tuple(s) for s in base]:
                session.real(keep)  # the model must accept the kept size itself
            first, second = session.real(grown), session.real(grown, keep)
        except _STOP:
            raise
        except Exception as exc:  # noqa: BLE001 - too small for this model: try the next size
            session.log(label, f"real, refused ({type(exc).__name__}: {first_line(exc)})")
            continue
        matter = len(first) != len(second) or any(
            a.kind == "tensor" and not session.backend.same_values(a, b) for a, b in zip(first, second, strict=True)
        )
        session.log(label, f"real, {'changed' if matter else 'did not change'} the output (candidate {index})")
        return matter
    group.accepted = False  # the real model refused every size the shapes accepted
    return False


def _decide(session: _Session, groups: Sequence[_Group], base: Shapes, base_outputs: Sequence[MeasuredTensor]) -> None:
    """Probe each group's sizes, then whether its extra slices matter (an output that follows it says they do)."""
    for group in groups:
        _probe_sizes(session, group, base, base_outputs)
    for group in groups:
        if group.accepted and not group.followed:
            group.used = _extra_slices_matter(session, group, base)


def _group_notes(
    group: _Group,
    inputs: Sequence[ProbeInput],
    base: Shapes,
    notes: list[str],
    input_notes: dict[int, str],
    *,
    base_given: bool = False,
) -> None:
    """Warnings and notes for one decided group."""
    dim_orders = [spec.resolved_dim_order() for spec in inputs]
    asked = [(i, a) for i, a in group.axes if _caller_dynamic(inputs[i], a)]
    for i, a in asked if not (group.accepted and group.used) else ():
        why = "failed at other sizes" if not group.accepted else "ignores the extra slices (same output)"
        warnings.warn(
            f"input {inputs[i].name!r}: dimension {dim_orders[i][a]!r} was given as -1 but the model {why}; it is "
            "kept dynamic as asked.",
            RuntimeWarning,
            stacklevel=4,
        )
    if not group.accepted and group.name == "batch":
        notes.append("The model failed at batch size 2; the batch dimension is fixed.")
    if group.accepted and not group.used:
        for i in sorted({i for i, _ in group.axes}):
            names = [dim_orders[i][a] for ii, a in group.axes if ii == i]
            sizes = [base[i][a] for ii, a in group.axes if ii == i]
            notes.append(
                f"input {inputs[i].name!r}: {'/'.join(names)} accept other sizes, but extra slices do not change the "
                f"output; fixed at {'x'.join(map(str, sizes))}."
            )
    stated = [(i, a) for i, a in group.axes if inputs[i].stated_axis(a, base_given=base_given)]
    for i in sorted({i for i, _ in stated}) if group.accepted and group.used else ():
        names = "/".join(dim_orders[i][a] for ii, a in stated if ii == i)
        sizes = "x".join(str(base[i][a]) for ii, a in stated if ii == i)
        notes.append(
            f"input {inputs[i].name!r}: {names} given as {sizes} in input_shape, and the model runs at other sizes "
            "too: written as -1 (dynamic). Pass probe_dynamic=False (--no-probe) to keep the sizes given."
        )
    if group.accepted and group.used and group.name != "batch" and not group.odd_ok:
        multiple = _multiple(group, base)
        for i, a in group.axes:
            input_notes[i] = (
                f"{'/'.join(dim_orders[i][ax] for ii, ax in group.axes if ii == i)} must be multiples of "
                f"{multiple} (probed sizes {base[i][a]}, {base[i][a] + 32}, {base[i][a] + 64} ran; "
                f"{base[i][a] + ODD_STEP} did not)."
            )


def measured_dim_orders(inputs: Sequence[ProbeInput], groups: Sequence[_Group]) -> tuple[tuple[str, ...], ...]:
    """Each input's dim_order, with ``batch`` moved to the axis the measurements say is the batch.

    A layer heuristic (a time-major RNN, ``batch_first`` unreadable once traced) may name axis 1 ``batch``. When
    varying that axis changed no output's size while varying axis 0 changed an output's leading axis in step,
    axis 0 is the batch: the two names are swapped. (A model whose outputs follow both axes, [T, B, H] or [B, T, H],
    keeps the heuristic's names: shapes alone cannot tell them apart.)
    """
    orders = [spec.resolved_dim_order() for spec in inputs]
    batch = next((g for g in groups if g.name == "batch"), None)
    if batch is not None and batch.accepted and batch.followed:
        return tuple(orders)
    for index, order in enumerate(orders):
        if "batch" not in order or order.index("batch") == 0:
            continue
        leading = next((g for g in groups if g.name != "batch" and (index, 0) in g.axes), None)
        if leading is not None and leading.accepted and any(axis == 0 for _, axis in leading.followed):
            b = order.index("batch")
            swapped = list(order)
            swapped[0], swapped[b] = "batch", order[0]
            orders[index] = tuple(swapped)
    return tuple(orders)


def _result(
    session: _Session,
    inputs: Sequence[ProbeInput],
    groups: Sequence[_Group],
    base: Shapes,
    base_outputs: Sequence[MeasuredTensor],
    *,
    base_given: bool = False,
) -> ProbeResult:
    notes: list[str] = []
    input_notes: dict[int, str] = {}
    dynamic_in = {(i, a) for i, spec in enumerate(inputs) for a in range(len(spec.shape)) if _caller_dynamic(spec, a)}
    dynamic_out: set[tuple[int, int]] = set()
    for group in groups:
        _group_notes(group, inputs, base, notes, input_notes, base_given=base_given)
        if group.accepted and group.used:
            dynamic_in |= set(group.axes)
            dynamic_out |= group.followed
        elif any((i, a) in dynamic_in for i, a in group.axes):
            dynamic_out |= group.followed
    input_shapes = tuple(
        tuple(-1 if (i, a) in dynamic_in else size for a, size in enumerate(shape)) for i, shape in enumerate(base)
    )
    outputs = tuple(
        replace(o, values=None, shape=tuple(-1 if (k, a) in dynamic_out else s for a, s in enumerate(o.shape)))
        for k, o in enumerate(base_outputs)
    )
    dim_orders = measured_dim_orders(inputs, groups)
    return ProbeResult(
        input_shapes, dim_orders, outputs, session.real_runs, tuple(notes), input_notes, session.shape_runs,
        tuple(session.paths),
    )  # fmt: skip


def _probe_once(
    backend: ProbeBackend, inputs: Sequence[ProbeInput], base: Shapes, *, probe_dynamic: bool, base_given: bool,
    shapes_first: bool,
) -> ProbeResult:  # fmt: skip
    session = _Session(backend, shapes_first=shapes_first)
    try:
        base_outputs = _base_outputs(session, base)
        groups = _groups(inputs) if probe_dynamic else []
        _decide(session, groups, base, base_outputs)
        return _result(session, inputs, groups, base, base_outputs, base_given=base_given)
    finally:
        session.close()


def probe(
    backend: ProbeBackend,
    inputs: Sequence[ProbeInput],
    *,
    probe_dynamic: bool = True,
    base_shapes: Shapes | None = None,
    shapes_first: bool = True,
) -> ProbeResult:
    """Run the model at the base shapes, then search which dimensions are dynamic (see the module docstring).

    Args:
        backend: shape-only and real runs of the model.
        inputs: the model inputs; a -1 in a shape means "use the default size and probe it".
        probe_dynamic: when False, run once and mark only the caller's -1 dimensions as dynamic.
        base_shapes: concrete shapes of a caller's example input (overrides the defaults).
        shapes_first: probe on shapes alone where possible; False runs every probe for real.

    Raises:
        ProbeError: the base run fails (the message names the shapes tried and the original error).
        ConfigurationError: an input is too large for a dry-run.
    """
    base = base_shapes_of(inputs, base_shapes)
    options = {"probe_dynamic": probe_dynamic, "base_given": base_shapes is not None}
    result = _probe_once(backend, inputs, base, shapes_first=shapes_first, **options)
    if any(o.non_finite for o in result.outputs):
        names = ", ".join(o.name for o in result.outputs if o.non_finite)
        warnings.warn(f"The dry-run produced NaN or inf values in output(s) {names}.", RuntimeWarning, stacklevel=2)
    if shapes_first and os.environ.get(VERIFY_ENV) == "1":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            real = _probe_once(backend, inputs, base, shapes_first=False, **options)
        verify_same(result, real)
    return result


def verify_same(shaped: ProbeResult, real: ProbeResult) -> None:
    """Raise AssertionError when probing on shapes found something else than probing with real forwards."""
    fields = ("input_shapes", "input_dim_orders", "outputs", "notes", "input_notes")
    differing = [name for name in fields if getattr(shaped, name) != getattr(real, name)]
    if differing:
        details = "; ".join(f"{n}: {getattr(shaped, n)!r} vs {getattr(real, n)!r}" for n in differing)
        raise AssertionError(f"Shape-only and real-forward probing disagree on {details}")
