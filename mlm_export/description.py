"""Framework-neutral model description: plain frozen dataclasses that adapters fill and the builder reads.

Nothing here imports a framework. Each class checks its own invariants in ``__post_init__`` and raises
:class:`~mlm_export.errors.DescriptionError` naming the field; the JSON schemas remain the authority on the rest.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mlm_export.errors import DescriptionError

#: Data types MLM accepts for ``input.data_type`` / ``result.data_type`` (raster v1.1.0 list).
DATA_TYPES: tuple[str, ...] = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64", "other",
)  # fmt: skip

#: The ``mlm:tasks`` enum of MLM v1.5.2.
TASKS: tuple[str, ...] = (
    "regression", "classification", "scene-classification", "detection", "object-detection",
    "segmentation", "semantic-segmentation", "instance-segmentation", "panoptic-segmentation",
    "similarity-search", "generative", "image-captioning", "super-resolution", "downscaling",
)  # fmt: skip

#: The ``mlm:accelerator`` enum of MLM v1.5.2 (``cpu`` is not in it: plain CPU is ``amd64``).
ACCELERATORS: tuple[str, ...] = (
    "amd64", "cuda", "xla", "amd-rocm", "intel-ipex-cpu", "intel-ipex-gpu", "macos-arm",
)  # fmt: skip

#: ``resize_type`` values of MLM v1.5.2.
RESIZE_TYPES: tuple[str, ...] = (
    "crop", "pad", "interpolation-nearest", "interpolation-linear", "interpolation-cubic",
    "interpolation-area", "interpolation-lanczos4", "interpolation-max", "wrap-fill-outliers",
    "wrap-inverse-map",
)  # fmt: skip

#: ``value_scaling`` types and the numeric keys each requires.
VALUE_SCALING_KEYS: dict[str, tuple[str, ...]] = {
    "min-max": ("minimum", "maximum"),
    "z-score": ("mean", "stddev"),
    "clip": ("minimum", "maximum"),
    "clip-min": ("minimum",),
    "clip-max": ("maximum",),
    "offset": ("value",),
    "scale": ("value",),
    "processing": ("format", "expression"),
}

#: Roles of an asset that holds the model artifact.
MODEL_ROLE = "mlm:model"

_DIM_NAME = re.compile(r"^[a-z-_]+$")
_SLUG = re.compile(r"[^0-9A-Za-z_-]+")

T = TypeVar("T")


_HYPERPARAMETER_KEY = re.compile(r"[^0-9a-zA-Z_.-]+")


def hyperparameter_key(key: object) -> str:
    """Return ``key`` as an ``mlm:hyperparameters`` key: characters outside ``[0-9a-zA-Z_.-]`` become ``_``."""
    return _HYPERPARAMETER_KEY.sub("_", str(key)).strip("_") or "_"


def slugify(text: str) -> str:
    """Return ``text`` as a class-name slug (``[0-9A-Za-z_-]+``), e.g. ``"Water body"`` -> ``"water-body"``."""
    slug = _SLUG.sub("-", text.strip()).strip("-")
    return slug or "class"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DescriptionError(message)


@dataclass(frozen=True)
class ValueScaling:
    """One ``value_scaling`` entry: how a band/channel is scaled before it is fed to the model."""

    type: str
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    stddev: float | None = None
    value: float | None = None
    format: str | None = None
    expression: Any = None

    def __post_init__(self) -> None:
        _require(
            self.type in VALUE_SCALING_KEYS,
            f"value_scaling type {self.type!r} is not one of {sorted(VALUE_SCALING_KEYS)}.",
        )
        for key in VALUE_SCALING_KEYS[self.type]:
            _require(getattr(self, key) is not None, f"value_scaling of type {self.type!r} needs {key!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Return the MLM JSON object (``None`` values dropped)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ClassInfo:
    """One output class; ``name`` is a slug so that classification v1.1 and v2.0 both accept it."""

    value: int
    name: str
    description: str
    color_hint: str | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.value, int) and not isinstance(self.value, bool), "class value must be an int.")
        _require(bool(self.name) and slugify(self.name) == self.name, f"class name {self.name!r} must be a slug.")
        _require(bool(self.description), f"class {self.name!r} needs a description.")
        if self.color_hint is not None:
            _require(
                re.fullmatch(r"[0-9A-Fa-f]{6}", self.color_hint) is not None,
                f"color_hint {self.color_hint!r} of class {self.name!r} must be 6 hex digits without '#'.",
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the classification Class Object."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Band:
    """A band definition (STAC 1.1 ``bands`` entry)."""

    name: str
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the STAC band object."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor: ``shape`` uses -1 for a dynamic dimension; ``dim_order`` has one name per dimension."""

    name: str
    shape: tuple[int, ...]
    dim_order: tuple[str, ...]
    data_type: str
    description: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dim_order", tuple(self.dim_order))
        _require(bool(self.name), "tensor name must not be empty.")
        _require(len(self.shape) > 0, f"tensor {self.name!r}: shape must have at least one dimension.")
        _require(
            all(s >= -1 for s in self.shape),
            f"tensor {self.name!r}: shape {list(self.shape)} may only hold sizes >= 0 or -1 (dynamic).",
        )
        _require(
            len(self.shape) == len(self.dim_order),
            f"tensor {self.name!r}: shape {list(self.shape)} has {len(self.shape)} dimensions "
            f"but dim_order {list(self.dim_order)} has {len(self.dim_order)}.",
        )
        _require(
            all(_DIM_NAME.match(d) for d in self.dim_order) and len(set(self.dim_order)) == len(self.dim_order),
            f"tensor {self.name!r}: dim_order {list(self.dim_order)} must be unique lowercase names.",
        )
        _require(
            self.data_type in DATA_TYPES,
            f"tensor {self.name!r}: data_type {self.data_type!r} is not one of {list(DATA_TYPES)}.",
        )


#: Nullable fields of an input/output that MLM reads as "none applies" when null *or omitted*. ``None`` in a spec
#: means unknown (the builder omits the field and warns); naming the field in ``none_applies`` writes an explicit
#: ``null`` because the caller said that no scaling/resizing/processing applies.
INPUT_NULLABLE: tuple[str, ...] = ("value_scaling", "resize_type", "pre_processing")
OUTPUT_NULLABLE: tuple[str, ...] = ("post_processing",)


def _check_none_applies(spec: TensorSpec, allowed: tuple[str, ...]) -> None:
    names = tuple(spec.none_applies)  # type: ignore[attr-defined]
    object.__setattr__(spec, "none_applies", names)
    for field_name in names:
        _require(field_name in allowed, f"{spec.name!r}: none_applies names {field_name!r}, not one of {allowed}.")
        _require(
            getattr(spec, field_name) is None,
            f"{spec.name!r}: {field_name} is both given and declared as not applying (none_applies).",
        )


@dataclass(frozen=True)
class InputSpec(TensorSpec):
    """A model input with its band names, scaling, resize and pre-processing."""

    bands: tuple[str, ...] = ()
    value_scaling: tuple[ValueScaling, ...] | None = None
    resize_type: str | None = None
    pre_processing: tuple[dict[str, Any], ...] | None = None
    none_applies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_none_applies(self, INPUT_NULLABLE)
        object.__setattr__(self, "bands", tuple(self.bands))
        if self.value_scaling is not None:
            object.__setattr__(self, "value_scaling", tuple(self.value_scaling))
            _require(len(self.value_scaling) > 0, f"input {self.name!r}: value_scaling must not be empty; use None.")
        if self.bands:
            _require("bands" in self.dim_order, f"input {self.name!r}: band names need 'bands' in dim_order.")
        else:
            _require("bands" not in self.dim_order, f"input {self.name!r}: 'bands' in dim_order needs band names.")
        _require(
            self.resize_type is None or self.resize_type in RESIZE_TYPES,
            f"input {self.name!r}: resize_type {self.resize_type!r} is not one of {list(RESIZE_TYPES)}.",
        )


@dataclass(frozen=True)
class OutputSpec(TensorSpec):
    """A model output with its tasks, classes and post-processing."""

    tasks: tuple[str, ...] = ()
    classes: tuple[ClassInfo, ...] = ()
    bands: tuple[str, ...] = ()
    post_processing: tuple[dict[str, Any], ...] | None = None
    none_applies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_none_applies(self, OUTPUT_NULLABLE)
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "bands", tuple(self.bands))
        for task in self.tasks:
            _require(task in TASKS, f"output {self.name!r}: task {task!r} is not one of {list(TASKS)}.")
        values = [c.value for c in self.classes]
        _require(len(values) == len(set(values)), f"output {self.name!r}: class values must be unique.")
        if self.bands:
            _require("bands" in self.dim_order, f"output {self.name!r}: band names need 'bands' in dim_order.")
        else:
            _require("bands" not in self.dim_order, f"output {self.name!r}: 'bands' in dim_order needs band names.")


@dataclass(frozen=True)
class Artifact:
    """A file (or remote href) that belongs to the model, e.g. its weights or external data."""

    key: str
    roles: tuple[str, ...]
    path: str | None = None
    href: str | None = None
    artifact_type: str | None = None
    media_type: str | None = None
    title: str | None = None
    description: str | None = None
    file_size: int | None = None
    file_checksum: str | None = None
    compile_method: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        _require(self.path is not None or self.href is not None, f"artifact {self.key!r} needs a path or an href.")
        is_model = MODEL_ROLE in self.roles
        _require(
            is_model == (self.artifact_type is not None),
            f"artifact {self.key!r}: artifact_type is required with role {MODEL_ROLE!r} and forbidden without it.",
        )

    @property
    def is_model(self) -> bool:
        """Whether this artifact is a main model asset (role ``mlm:model``)."""
        return MODEL_ROLE in self.roles


@dataclass(frozen=True)
class Link:
    """A STAC link (``derived_from`` with ``ml-aoi:split``, ``cite-as``, source code...)."""

    rel: str
    href: str
    media_type: str | None = None
    title: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelDescription:
    """Everything known about a model, measured by an adapter or supplied by the caller."""

    name: str
    architecture: str
    tasks: tuple[str, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    framework: str | None = None
    framework_version: str | None = None
    total_parameters: int | None = None
    trainable_parameters: int | None = None
    memory_size: int | None = None
    accelerator: str | None = None
    accelerator_constrained: bool | None = None
    accelerator_summary: str | None = None
    accelerator_count: int | None = None
    batch_size_suggestion: int | None = None
    pretrained: bool | None = None
    pretrained_source: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    band_definitions: tuple[Band, ...] = ()
    bbox: tuple[float, ...] | None = None
    geometry: Mapping[str, Any] | None = None
    datetime: str | None = None
    start_datetime: str | None = None
    end_datetime: str | None = None
    links: tuple[Link, ...] = ()
    license: str | None = None
    description: str | None = None
    notes: tuple[str, ...] = ()
    #: Caller-level values (name, tasks, bands, classes, value_scaling...) recovered from metadata embedded in the
    #: artifact; ``export_item`` uses them where the caller passes nothing. Not written to the item as such.
    embedded: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tasks", "inputs", "outputs", "artifacts", "band_definitions", "links", "notes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.bbox is not None:
            object.__setattr__(self, "bbox", tuple(float(v) for v in self.bbox))
        _require(bool(self.name), "model name must not be empty.")
        _require(len(self.inputs) > 0, f"model {self.name!r} needs at least one input.")
        _require(len(self.outputs) > 0, f"model {self.name!r} needs at least one output.")
        for task in self.tasks:
            _require(task in TASKS, f"model {self.name!r}: task {task!r} is not one of {list(TASKS)}.")
        _require(
            self.accelerator is None or self.accelerator in ACCELERATORS,
            f"accelerator {self.accelerator!r} is not one of {list(ACCELERATORS)} (plain CPU is 'amd64').",
        )
        for count_name in ("total_parameters", "trainable_parameters", "memory_size", "batch_size_suggestion"):
            value = getattr(self, count_name)
            _require(value is None or (isinstance(value, int) and value >= 0), f"{count_name} must be an int >= 0.")

    def replace(self, **changes: Any) -> ModelDescription:
        """Return a copy with ``changes`` applied (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict that :meth:`from_dict` turns back into an equal description."""
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelDescription:
        """Rebuild a description from :meth:`to_dict` output."""
        values = dict(data)
        values["inputs"] = [
            InputSpec(
                **{
                    **i,
                    "value_scaling": None
                    if i.get("value_scaling") is None
                    else [ValueScaling(**v) for v in i["value_scaling"]],
                    "pre_processing": None if i.get("pre_processing") is None else list(i["pre_processing"]),
                }
            )
            for i in values.get("inputs", [])
        ]
        values["outputs"] = [
            OutputSpec(
                **{
                    **o,
                    "classes": [ClassInfo(**c) for c in o.get("classes", [])],
                    "post_processing": None if o.get("post_processing") is None else list(o["post_processing"]),
                }
            )
            for o in values.get("outputs", [])
        ]
        values["artifacts"] = [Artifact(**a) for a in values.get("artifacts", [])]
        values["band_definitions"] = [Band(**b) for b in values.get("band_definitions", [])]
        values["links"] = [Link(**link) for link in values.get("links", [])]
        return cls(**values)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def classes_from(spec: Sequence[str | Mapping[str, Any] | ClassInfo] | int) -> tuple[ClassInfo, ...]:
    """Build class objects from names, dicts (``value``/``name``/``description``/``color_hint``) or a count."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return tuple(ClassInfo(i, f"class_{i}", f"Class {i}") for i in range(spec))
    classes = []
    for index, entry in enumerate(spec):
        if isinstance(entry, ClassInfo):
            classes.append(entry)
        elif isinstance(entry, str):
            classes.append(ClassInfo(index, slugify(entry), entry))
        elif isinstance(entry, Mapping):
            name = str(entry.get("name", entry.get("description", f"class_{index}")))
            color = entry.get("color_hint")
            if isinstance(color, str):
                color = color.lstrip("#")
            classes.append(
                ClassInfo(
                    value=int(entry.get("value", index)),
                    name=slugify(name),
                    description=str(entry.get("description") or name),
                    color_hint=color,
                )
            )
        else:
            raise DescriptionError(f"class #{index} must be a name, a dict or ClassInfo, got {type(entry).__name__}.")
    return tuple(classes)
