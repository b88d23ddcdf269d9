"""What the caller says about a model, applied over what was measured: the frozen :class:`Overrides`.

``export_item``, ``inspect_model`` and the integrations pass the same ten descriptive values (tasks, bands,
classes, name...) and the extent/links/hyperparameters; they travel as one :class:`Overrides` instead of keyword
lists written out again at every step. Values embedded in an artifact fill the descriptive ones the caller left
out (:meth:`Overrides.with_embedded`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from mlm_export import embedded
from mlm_export.description import (
    Band,
    ClassInfo,
    InputSpec,
    Link,
    ModelDescription,
    OutputSpec,
    ValueScaling,
    classes_from,
)
from mlm_export.errors import ConfigurationError, DescriptionError
from mlm_export.extent import parse_extent
from mlm_export.probing import infer_output_task

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-\s]+[a-zA-Z0-9]$")
CLASS_TASKS = ("classification", "scene-classification", "semantic-segmentation", "segmentation",
               "instance-segmentation", "panoptic-segmentation", "object-detection", "detection")  # fmt: skip
#: The descriptive values an artifact can embed (``embed_metadata=True``) and give back as defaults.
EMBEDDABLE = embedded.FIELDS


@dataclass(frozen=True)
class Overrides:
    """Everything the caller knows about the model; None (or empty) means "not given"."""

    tasks: Sequence[str] | None = None
    bands: Sequence[str | Mapping[str, Any]] | Mapping[str, Sequence[Any]] | None = None
    classes: Sequence[str | Mapping[str, Any] | ClassInfo] | None = None
    name: str | None = None
    description: str | None = None
    value_scaling: Sequence[ValueScaling | Mapping[str, Any]] | Mapping[str, Any] | str | None = None
    resize_type: str | None = None
    none_applies: Sequence[str] | None = None
    pretrained: bool | None = None
    pretrained_source: str | None = None
    license: str | None = None
    bbox: Sequence[float] | None = None
    geometry: Mapping[str, Any] | None = None
    datetime: str | dt.datetime | None = None
    start_datetime: str | dt.datetime | None = None
    end_datetime: str | dt.datetime | None = None
    dim_orders: Mapping[str, Sequence[str]] | None = None
    hyperparameters: Mapping[str, Any] | None = None
    links: Sequence[Link | Mapping[str, Any]] | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names (the keyword arguments ``export_item`` and ``inspect_model`` take for them)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def pop_from(cls, values: dict[str, Any]) -> Overrides:
        """Take this class's fields out of ``values`` (a keyword-argument dict) and return them as Overrides."""
        return cls(**{k: values.pop(k) for k in cls.names() if k in values})

    def check(self) -> None:
        """Check what needs no measurement (extent, name), so that a typo costs no dry-run.

        Raises:
            ConfigurationError: the extent or the name is invalid.
        """
        parse_extent(self.extent_values())
        if self.name is not None:
            check_name(self.name)

    def extent_values(self) -> dict[str, Any]:
        """bbox, geometry and the date-times as given."""
        return {k: getattr(self, k) for k in ("bbox", "geometry", "datetime", "start_datetime", "end_datetime")}

    def embeddable(self) -> dict[str, Any]:
        """The descriptive values given, as JSON-safe data for artifacts that embed them."""
        return embeddable_metadata(**{k: getattr(self, k) for k in EMBEDDABLE})

    def with_embedded(self, embedded: Mapping[str, Any]) -> Overrides:
        """These overrides with the descriptive values left out taken from an artifact's embedded metadata."""
        filled = {k: v for k, v in embedded.items() if k in EMBEDDABLE and getattr(self, k) is None}
        return replace(self, **filled)

    def apply_with_embedded(self, described: ModelDescription) -> ModelDescription:
        """Apply these overrides, filled with ``described.embedded`` (the artifact's own metadata) where left out.

        Embedded values that do not fit the model are ignored with a ``RuntimeWarning`` (they are defaults only).

        Raises:
            ConfigurationError: an override the caller gave does not fit the model.
        """
        if not described.embedded:
            return self.apply(described)
        try:
            return self.with_embedded(described.embedded).apply(described)
        except ConfigurationError as exc:
            result = self.apply(described)  # raises if the caller's own values are at fault
            warnings.warn(f"The embedded MLM metadata could not be applied ({exc.message}); it is ignored.",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
            return result

    def apply(self, described: ModelDescription) -> ModelDescription:
        """Apply these overrides over ``described``; infer tasks and classes when not given.

        Raises:
            ConfigurationError: an override does not fit the model (band count, class count, unknown name...).
        """
        try:
            return _apply(described, self)
        except DescriptionError as exc:
            raise ConfigurationError(exc.message, hint=exc.hint or "Check the argument named in the message.") from exc


def embeddable_metadata(**values: Any) -> dict[str, Any]:
    """The caller's values as JSON-safe data, for artifacts that embed them (safetensors, .pt2, ONNX).

    ``export_item`` on such an artifact reads them back and uses them where the caller passes nothing.
    """
    result: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key in ("bands", "value_scaling") and isinstance(value, Mapping):  # by input name (several inputs)
            value = {str(k): embeddable_metadata(**{key: v})[key] for k, v in value.items()}
        elif key in ("tasks", "bands"):
            value = [v if isinstance(v, str) else dict(v) for v in value]
        elif key == "classes":
            value = [c.to_dict() for c in classes_from(value)]
        elif key == "value_scaling" and not isinstance(value, str):
            value = [v.to_dict() if isinstance(v, ValueScaling) else dict(v) for v in value]
        result[key] = value
    return result


def model_name_from(text: str) -> str:
    """A valid ``mlm:name`` from a class or file name (letters first, letter/digit last)."""
    cleaned = re.sub(r"[^a-zA-Z0-9_.\-\s]+", "-", text).strip(" _.-")
    cleaned = re.sub(r"^[^a-zA-Z]+", "", cleaned)
    if len(cleaned) < 3:
        cleaned = f"model-{cleaned}" if cleaned else "model"
    return cleaned


def check_name(name: str) -> str:
    """``name`` if it is a valid ``mlm:name``.

    Raises:
        ConfigurationError: it is not.
    """
    if not _NAME.match(name):
        raise ConfigurationError(
            f"name={name!r} is not a valid mlm:name.",
            hint="Use at least 3 characters: a letter first, then letters, digits, '_', '.', '-' or spaces, "
            "ending with a letter or digit.",
        )
    return name


def _apply(described: ModelDescription, given: Overrides) -> ModelDescription:
    inputs = list(described.inputs)
    outputs = list(described.outputs)
    notes = list(described.notes)
    changes: dict[str, Any] = {}
    _apply_dim_orders(inputs, outputs, given.dim_orders or {})
    if given.bands is not None:
        inputs, changes["band_definitions"] = _apply_bands(inputs, given.bands)
    scaling = {
        "value_scaling": given.value_scaling,
        "resize_type": given.resize_type,
        "none_applies": given.none_applies,
    }
    inputs, outputs = _apply_none_applies(inputs, outputs, scaling)
    if scaling["value_scaling"] is not None or scaling["resize_type"] is not None:
        inputs = _apply_scaling(inputs, scaling["value_scaling"], scaling["resize_type"])
    outputs, changes["tasks"], note = _apply_tasks(described, outputs, given.tasks)
    notes.extend([note] if note else [])
    hyper = _hyperparameters(described, given)
    outputs = _apply_class_info(outputs, given.classes, hyper)
    changes["hyperparameters"] = hyper
    changes.update(_named_fields(described, given))
    changes.update(parse_extent(given.extent_values()))
    if given.links:
        changes["links"] = (*described.links, *(_as_link(link) for link in given.links))
    return described.replace(**changes, inputs=tuple(inputs), outputs=tuple(outputs), notes=tuple(notes))


def _apply_dim_orders(inputs: list[InputSpec], outputs: list[OutputSpec], orders: Mapping[str, Any]) -> None:
    for key, order in orders.items():
        matched = False
        for seq in (inputs, outputs):
            for index, spec in enumerate(seq):
                if spec.name == key:
                    seq[index] = replace(spec, dim_order=tuple(order))
                    matched = True
        if not matched:
            names = [s.name for s in (*inputs, *outputs)]
            raise ConfigurationError(f"dim_orders names {key!r}, which is no input or output ({names}).")


def _is_embedding(spec: OutputSpec) -> bool:
    return "embedding" in spec.dim_order


def _apply_tasks(
    described: ModelDescription, outputs: list[OutputSpec], tasks: Sequence[str] | None
) -> tuple[list[OutputSpec], tuple[str, ...], str | None]:
    """Outputs with tasks, the model's tasks, and a note when they were inferred.

    An embedding output (an ``embedding`` axis) gets no task of its own: the caller's (less the class tasks another
    output carries), else none; a model whose outputs are all embeddings gets ``mlm:tasks`` ``[]`` unless given.
    """
    note = None
    headed = any(not _is_embedding(o) for o in outputs)
    if tasks is not None:
        model_tasks = tuple(tasks)
        embedding_tasks = tuple(t for t in model_tasks if t not in CLASS_TASKS) if headed else model_tasks
        outputs = [
            replace(o, tasks=tuple(t for t in o.tasks if t in model_tasks)
                    or (embedding_tasks if _is_embedding(o) else model_tasks))
            for o in outputs
        ]  # fmt: skip
    elif described.tasks:
        model_tasks = described.tasks
        outputs = [o if o.tasks or _is_embedding(o) else replace(o, tasks=model_tasks) for o in outputs]
    else:
        inferred: list[str] = []
        for index, out in enumerate(outputs):
            if not out.tasks and _is_embedding(out):
                continue
            task = out.tasks[0] if out.tasks else infer_output_task(out) or "regression"
            outputs[index] = replace(out, tasks=out.tasks or (task,))
            inferred.extend(t for t in outputs[index].tasks if t not in inferred)
        model_tasks = tuple(inferred)
        note = f"Tasks {', '.join(model_tasks)} were inferred from the output shapes; pass tasks= to set them."
        embeddings = [o.name for o in outputs if not o.tasks]
        if embeddings:
            what = f"output(s) {', '.join(map(repr, embeddings))} are embeddings, with no task of their own"
            unset = f"No task was inferred: {what} (mlm:tasks is []); pass tasks= (e.g. similarity-search) to set them."
            note = f"{note} The {what}." if model_tasks else unset
    # An embedding model's vector is not a class dimension.
    outputs = [
        replace(o, dim_order=tuple("embedding" if d == "class" else d for d in o.dim_order))
        if "similarity-search" in o.tasks and not any(t in CLASS_TASKS for t in o.tasks)
        else o
        for o in outputs
    ]
    return outputs, model_tasks, note


def _hyperparameters(described: ModelDescription, given: Overrides) -> dict[str, Any]:
    hyper = dict(described.hyperparameters)
    hyper.update(given.hyperparameters or {})
    try:
        json.dumps(hyper, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"hyperparameters are not JSON data ({exc}).",
            hint="Give numbers, strings, booleans, lists or dicts of them (e.g. str() of other objects).",
        ) from exc
    return hyper


def _apply_class_info(
    outputs: list[OutputSpec], classes: Sequence[Any] | None, hyper: Mapping[str, Any]
) -> list[OutputSpec]:
    """Classes only when known (caller, weights metadata, datamodule, embedded metadata): never placeholders.

    The output shape already says how many classes there are; "class_0 ... class_999" would say nothing more.
    """
    if classes is not None:
        return _apply_classes(outputs, classes_from(classes), strict=True)
    return outputs


def _named_fields(described: ModelDescription, given: Overrides) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if given.name is not None:
        changes["name"] = check_name(given.name)
    elif not _NAME.match(described.name):
        changes["name"] = model_name_from(described.name)
    for key in ("description", "pretrained", "pretrained_source", "license"):
        if getattr(given, key) is not None:
            changes[key] = getattr(given, key)
    if given.pretrained_source is not None and given.pretrained is None:
        changes["pretrained"] = True
    return changes


def _channel_axis(spec: InputSpec) -> int | None:
    for candidate in ("channel", "bands"):
        if candidate in spec.dim_order:
            return spec.dim_order.index(candidate)
    return None


def _band_definitions(bands: Sequence[str | Mapping[str, Any]], argument: str) -> tuple[Band, ...]:
    definitions = tuple(
        Band(name=str(b)) if isinstance(b, str) else Band(name=str(b["name"]), description=b.get("description"))
        for b in bands
    )
    names = [b.name for b in definitions]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{argument}={names} repeats a name.", hint="Give each band once, in channel order.")
    return definitions


def _input_named(inputs: list[InputSpec], name: str, argument: str) -> int:
    for index, spec in enumerate(inputs):
        if spec.name == name:
            return index
    raise ConfigurationError(
        f"{argument} names input {name!r}, which the model does not have ({[s.name for s in inputs]}).",
        hint="Key the mapping by the input names that inspect_model / mlm-export inspect shows.",
    )


def _set_bands(inputs: list[InputSpec], index: int, names: tuple[str, ...], argument: str) -> bool:
    """Put ``names`` on input ``index`` (its channel axis becomes ``bands``); False when it has no channel axis."""
    spec = inputs[index]
    axis = _channel_axis(spec)
    if axis is None:
        return False
    size = spec.shape[axis]
    if size not in (-1, len(names)):
        raise ConfigurationError(
            f"{argument} names {len(names)} bands but input {spec.name!r} has {size} channels "
            f"(shape {list(spec.shape)}).",
            hint="Give one band name per input channel, in channel order.",
        )
    order = list(spec.dim_order)
    order[axis] = "bands"
    inputs[index] = replace(spec, bands=names, dim_order=tuple(order))
    return True


def _apply_bands(
    inputs: list[InputSpec], bands: Sequence[str | Mapping[str, Any]] | Mapping[str, Sequence[Any]]
) -> tuple[list[InputSpec], tuple[Band, ...]]:
    """Band names of the first input with a channel axis, or of each input named in a mapping (multi-input)."""
    if isinstance(bands, Mapping) and not ("name" in bands and isinstance(bands.get("name"), str)):
        definitions: dict[str, Band] = {}
        for input_name, entries in bands.items():
            argument = f"bands[{input_name!r}]"
            own = _band_definitions(entries, argument)
            index = _input_named(inputs, str(input_name), "bands=")
            if not _set_bands(inputs, index, tuple(b.name for b in own), argument):
                raise ConfigurationError(f"{argument}: input {input_name!r} has no channel dimension.")
            definitions.update({b.name: b for b in own if b.name not in definitions})
        return inputs, tuple(definitions.values())
    definitions_list = _band_definitions(bands, "bands")  # type: ignore[arg-type]
    names = tuple(b.name for b in definitions_list)
    for index in range(len(inputs)):
        if _set_bands(inputs, index, names, "bands="):
            return inputs, definitions_list
    raise ConfigurationError(
        "bands= was given but no input has a channel dimension.",
        hint="Set dim_orders= so that one input has a 'channel' dimension.",
    )


def _scaling_of(entries: Any, spec: InputSpec, argument: str) -> tuple[ValueScaling, ...]:
    scaling = tuple(v if isinstance(v, ValueScaling) else ValueScaling(**dict(v)) for v in entries)
    axis = _channel_axis(spec)
    channels = spec.shape[axis] if axis is not None else -1
    if len(scaling) not in (1, channels) and channels != -1:
        raise ConfigurationError(
            f"{argument} has {len(scaling)} entries but input {spec.name!r} has {channels} channels.",
            hint="Give one entry per channel, or a single entry for all.",
        )
    return scaling


def _apply_scaling(inputs: list[InputSpec], value_scaling: Any, resize_type: str | None) -> list[InputSpec]:
    """value_scaling of the first input, or of each input named in a mapping; resize_type of the first input."""
    if isinstance(value_scaling, Mapping) and "type" not in value_scaling:
        for input_name, entries in value_scaling.items():
            index = _input_named(inputs, str(input_name), "value_scaling=")
            scaling = _scaling_of(entries, inputs[index], f"value_scaling[{input_name!r}]")
            inputs[index] = replace(inputs[index], value_scaling=scaling)
        value_scaling = None
    scaling = _scaling_of(value_scaling, inputs[0], "value_scaling") if value_scaling is not None else None
    inputs[0] = replace(
        inputs[0],
        value_scaling=scaling if scaling is not None else inputs[0].value_scaling,
        resize_type=resize_type if resize_type is not None else inputs[0].resize_type,
    )
    return inputs


def _class_axis(spec: OutputSpec) -> int | None:
    return spec.dim_order.index("class") if "class" in spec.dim_order else None


def _apply_classes(outputs: list[OutputSpec], classes: tuple[ClassInfo, ...], *, strict: bool) -> list[OutputSpec]:
    applied = False
    for index, spec in enumerate(outputs):
        if not any(t in CLASS_TASKS for t in spec.tasks) or _is_embedding(spec):
            continue
        axis = _class_axis(spec)
        size = spec.shape[axis] if axis is not None else -1
        if size not in (-1, len(classes)):
            if strict:
                raise ConfigurationError(
                    f"classes= has {len(classes)} entries but output {spec.name!r} has {size} classes "
                    f"(shape {list(spec.shape)}).",
                    hint="Give one class per output channel.",
                )
            continue
        outputs[index] = replace(spec, classes=classes)
        applied = True
    if strict and not applied:
        raise ConfigurationError(
            "classes= was given but no output has a classification or segmentation task.",
            hint="Pass tasks=['classification'] (or a segmentation task) too.",
        )
    return outputs


#: What the caller writes for "none applies" (an explicit ``null`` in the Item), e.g. ``resize_type="none"``.
NONE_APPLIES = "none"


def _apply_none_applies(
    inputs: list[InputSpec], outputs: list[OutputSpec], kw: dict[str, Any]
) -> tuple[list[InputSpec], list[OutputSpec]]:
    """Record the nullable fields the caller says do not apply; ``"none"`` values are consumed from ``kw``."""
    names = {str(n).removesuffix("_function") for n in (kw.get("none_applies") or ())}
    for key in ("value_scaling", "resize_type"):
        if isinstance(kw[key], str) and kw[key].lower() == NONE_APPLIES:
            names.add(key)
            kw[key] = None
    unknown = names - {"value_scaling", "resize_type", "pre_processing", "post_processing"}
    if unknown:
        raise ConfigurationError(
            f"none_applies names {sorted(unknown)}.",
            hint="Name value_scaling, resize_type, pre_processing_function or post_processing_function.",
        )
    if not names:
        return inputs, outputs
    in_names = tuple(n for n in ("value_scaling", "resize_type", "pre_processing") if n in names)
    out_names = ("post_processing",) if "post_processing" in names else ()
    inputs = [replace(i, none_applies=tuple(dict.fromkeys((*i.none_applies, *in_names)))) for i in inputs]
    outputs = [replace(o, none_applies=tuple(dict.fromkeys((*o.none_applies, *out_names)))) for o in outputs]
    return inputs, outputs


def _as_link(link: Link | Mapping[str, Any]) -> Link:
    """A :class:`Link` from a Link or a STAC link dict (``rel``, ``href``, ``type``, ``title``, extra fields)."""
    if isinstance(link, Link):
        return link
    if isinstance(link, Mapping) and isinstance(link.get("rel"), str) and isinstance(link.get("href"), str):
        extra = {k: v for k, v in link.items() if k not in ("rel", "href", "type", "title")}
        return Link(link["rel"], link["href"], link.get("type"), link.get("title"), extra)
    raise ConfigurationError(
        f"links= entry {link!r} is not a link.",
        hint="Pass mlm_export.description.Link(rel, href) objects or dicts with 'rel' and 'href'.",
    )
