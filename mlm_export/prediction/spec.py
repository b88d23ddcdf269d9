"""What a model Item declares for running it: its image input and its output, read once from ``mlm:input``/``output``.

``predict`` runs models whose inputs are all ``batch``, ``bands``/``channel``, ``height``, ``width`` grids: those
with ``bands`` are read from DATA, those without (a DEM, an auxiliary grid) from ``inputs={name: path}``;
an output is *dense* when it keeps ``height`` and ``width`` (a map) and *per tile* otherwise (one vector or class per
window: classification, scene regression, embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlm_export.errors import ConfigurationError, ItemValidationError

_CHANNEL_DIMS = ("bands", "channel", "channels", "variables")
_CLASS_TASKS = {"classification", "semantic-segmentation", "segmentation", "scene-classification"}


@dataclass(frozen=True)
class Band:
    """One channel of the input: a band read from the data, or computed by ``expression`` (``format``)."""

    name: str
    expression: Any = None
    format: str | None = None


@dataclass(frozen=True)
class InputSpec:
    """The image input: bands in channel order, shape (``-1`` dynamic) in ``batch, bands, height, width`` order."""

    name: str
    bands: tuple[Band, ...]
    batch: int
    height: int
    width: int
    data_type: str
    value_scaling: tuple[Mapping[str, Any], ...] | None
    resize_type: str | None
    pre_processing: tuple[Mapping[str, Any], ...]
    order: tuple[int, ...] = (0, 1, 2, 3)  # where batch, bands, height, width sit in the declared dim_order
    channels: int = -1  # the declared channel count (-1: dynamic)

    @property
    def fixed(self) -> bool:
        """Whether height and width are fixed sizes (windows of exactly that size)."""
        return self.height > 0 and self.width > 0


@dataclass(frozen=True)
class OutputSpec:
    """The first output: dense (a map with height/width) or per tile; classes when it is a classification."""

    name: str
    tasks: tuple[str, ...]
    dim_order: tuple[str, ...]
    data_type: str
    classes: tuple[Mapping[str, Any], ...] = field(default=())
    post_processing: tuple[Mapping[str, Any], ...] = ()

    @property
    def dense(self) -> bool:
        """A map (the output keeps height and width)."""
        return "height" in self.dim_order and "width" in self.dim_order

    @property
    def is_classes(self) -> bool:
        """Class scores: the result is turned into class values (argmax over the class dimension)."""
        return bool(self.classes) and bool(_CLASS_TASKS & set(self.tasks) or "class" in self.dim_order)


def _expressions(value: Any) -> tuple[Mapping[str, Any], ...]:
    """A processing function as a tuple of Expression objects (one, an array applied in order, or none)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(e, Mapping) and "format" in e and "expression" in e for e in items):
        raise ItemValidationError(
            f"A processing function {value!r} is not a Processing Expression ({{format, expression}}).",
            hint="Fix the Item: see the MLM Processing Expression object.",
        )
    return tuple(items)


def _band(entry: Any) -> Band:
    if isinstance(entry, str):
        return Band(entry)
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
        return Band(entry["name"], entry.get("expression"), entry.get("format"))
    raise ItemValidationError(f"mlm:input band {entry!r} has no name.", hint="Fix the Item's mlm:input bands.")


def _parse_input(entry: Mapping[str, Any]) -> InputSpec:
    shape, dims = list(entry["input"]["shape"]), list(entry["input"]["dim_order"])
    channel = next((d for d in dims if d in _CHANNEL_DIMS), None)
    if len(dims) != 4 or channel is None or not {"batch", "height", "width"} <= set(dims):
        raise ConfigurationError(
            f"Input {entry.get('name')!r} has dim_order {dims}; predict needs batch, bands, height and width.",
            hint="Run models of other layouts with load_model.",
        )
    order = tuple(dims.index(d) for d in ("batch", channel, "height", "width"))
    scaling = entry.get("value_scaling")
    return InputSpec(
        name=str(entry["name"]),
        bands=tuple(_band(b) for b in entry.get("bands") or []),
        batch=int(shape[order[0]]),
        height=int(shape[order[2]]),
        width=int(shape[order[3]]),
        data_type=str(entry["input"]["data_type"]),
        value_scaling=tuple(scaling) if scaling else None,
        resize_type=entry.get("resize_type"),
        pre_processing=_expressions(entry.get("pre_processing_function")),
        order=order,
        channels=int(shape[order[1]]),
    )


def input_specs(document: Mapping[str, Any]) -> tuple[InputSpec, ...]:
    """Every ``mlm:input``, in the Item's order (the order the model takes them).

    Inputs with ``bands`` are read from DATA; inputs without (a DEM, an auxiliary grid) from ``inputs={name: path}``.

    Raises:
        ConfigurationError: an input is not ``batch, bands, height, width``, no input names bands, or fixed inputs
            differ in height/width (all inputs are cut from the same windows).
    """
    entries = (document.get("properties") or {}).get("mlm:input") or []
    specs = tuple(_parse_input(entry) for entry in entries)
    if not any(spec.bands for spec in specs):
        names = ", ".join(repr(spec.name) for spec in specs) or "none"
        raise ConfigurationError(
            f"No input of the model Item ({names}) names bands, so predict cannot tell which data to read.",
            hint="Export the Item with bands= (their order is the channel order).",
        )
    sizes = {(s.height, s.width) for s in specs if s.fixed}
    if len(sizes) > 1 or (sizes and any(not s.fixed for s in specs)):
        raise ConfigurationError(
            f"The inputs {[s.name for s in specs]} have different heights/widths "
            f"{[(s.height, s.width) for s in specs]}; predict cuts every input from the same windows.",
            hint="Run models whose inputs differ in size with load_model.",
        )
    return specs


def input_spec(document: Mapping[str, Any]) -> InputSpec:
    """The Item's first input with bands: the image input whose windows drive the tiling.

    Raises:
        ConfigurationError: as :func:`input_specs`.
    """
    return next(spec for spec in input_specs(document) if spec.bands)


def output_spec(document: Mapping[str, Any]) -> OutputSpec:
    """The Item's first output (the one ``predict`` writes)."""
    entries: Sequence[Mapping[str, Any]] = (document.get("properties") or {}).get("mlm:output") or []
    if not entries:
        raise ItemValidationError("The model Item declares no mlm:output.", hint="Export it with mlm-export.")
    entry = entries[0]
    return OutputSpec(
        name=str(entry["name"]),
        tasks=tuple(entry.get("tasks") or ()),
        dim_order=tuple(entry["result"]["dim_order"]),
        data_type=str(entry["result"]["data_type"]),
        classes=tuple(entry.get("classification:classes") or ()),
        post_processing=_expressions(entry.get("post_processing_function")),
    )


def batch_size(document: Mapping[str, Any], spec: InputSpec) -> int | None:
    """A fixed batch dimension, else ``mlm:batch_size_suggestion``; None when the Item says neither."""
    if spec.batch > 0:
        return spec.batch
    suggestion = (document.get("properties") or {}).get("mlm:batch_size_suggestion")
    return int(suggestion) if isinstance(suggestion, int) and suggestion > 0 else None
