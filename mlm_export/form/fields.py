"""What the form's fields mean: the page's values -> the exact keyword arguments of :func:`mlm_export.export_item`.

The page sends one JSON object of plain values (text, numbers, lists). :func:`measure_arguments` and
:func:`export_arguments` turn it into ``export_item``'s keyword arguments, leaving out what the person left empty,
so that the Item the form makes is the Item ``export_item(model, **arguments)`` makes: the form is a view over the
library, never a second builder. A value that cannot become an argument (JSON that does not parse, a bbox that is
not four numbers) is a :class:`FieldError` naming its field.

:func:`field_of_pointer` and :func:`field_of_error` say next to which field a validation problem (a JSON pointer
into the Item) or a typed error of the library (whose message names an argument) is shown.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from mlm_export.description import RESIZE_TYPES, TASKS, VALUE_SCALING_KEYS
from mlm_export.errors import FieldError

#: Artifact formats the form offers (``artifact_format``; empty: the file is published as it is).
ARTIFACT_FORMATS = ("safetensors", "torch.save", "torchscript", "torch.export", "onnx")
#: ``ml-aoi:split`` values of a ``derived_from`` link.
SPLITS = ("train", "validate", "test")
#: Band presets: name -> band names in channel order (the Sentinel-2 / Landsat names of stac/bands.py).
BAND_PRESETS: dict[str, list[str]] = {
    "Sentinel-2 L1C (13 bands)": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                  "B11", "B12"],
    "Sentinel-2 L2A (12 bands)": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"],
    "Landsat 8/9 OLI-TIRS (11 bands)": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11"],
    "RGB": ["red", "green", "blue"],
    "RGBN": ["red", "green", "blue", "nir"],
}  # fmt: skip


def _text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(
            f"{key}: expected text, got {type(value).__name__}.", hint="Type text in the field.", field=key
        )
    return value.strip() or None


def _json(values: Mapping[str, Any], key: str, kind: type) -> Any:
    text = _text(values, key)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FieldError(f"{key}: not JSON ({exc.msg}).", hint='Write e.g. {"num_classes": 10}.', field=key) from None
    if not isinstance(value, kind):
        raise FieldError(f"{key}: expected a JSON {kind.__name__}.", hint='Write e.g. {"num_classes": 10}.', field=key)
    return value


def _shape(values: Mapping[str, Any]) -> list[int] | None:
    text = _text(values, "input_shape")
    if text is None:
        return None
    parts = [p for p in re.split(r"[,x\s\[\]()]+", text) if p]
    try:
        shape = [int(p) for p in parts]
    except ValueError:
        shape = []
    if not shape or any(s < -1 for s in shape):
        raise FieldError(
            f"input_shape: {text!r} is not a list of sizes.", hint="Write e.g. -1,4,64,64.", field="input_shape"
        )
    return shape


def measure_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """The measuring arguments (model class and kwargs, input shape, trust_pickle) of ``inspect_model``."""
    arguments: dict[str, Any] = {}
    model_class = _text(values, "model_class")
    if model_class is not None:
        arguments["model_class"] = model_class
    kwargs = _json(values, "model_kwargs", dict)
    if kwargs is not None:
        arguments["model_kwargs"] = kwargs
    shape = _shape(values)
    if shape is not None:
        arguments["input_shape"] = shape
    if values.get("trust_pickle") is True:
        arguments["trust_pickle"] = True
    return arguments


def _number(field: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(f"{field}: {value!r} is not a number.", hint="Type a number.", field=field)
    return float(value)


def _bbox(values: Mapping[str, Any]) -> list[float] | None:
    bbox = values.get("bbox")
    if bbox in (None, "", []) or (isinstance(bbox, list) and all(v in (None, "") for v in bbox)):
        return None
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise FieldError(
            "bbox: give four numbers W S E N.", hint="Draw a box on the map or type W S E N.", field="bbox"
        )
    return [_number("bbox", v) for v in bbox]


def _scaling_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or entry.get("type") not in VALUE_SCALING_KEYS:
        raise FieldError(f"value_scaling: unknown type in {entry!r}.", hint="Choose a type.", field="value_scaling")
    scaling: dict[str, Any] = {"type": entry["type"]}
    for key in VALUE_SCALING_KEYS[entry["type"]]:
        value = entry.get(key)
        if key == "format" or key == "expression":
            scaling[key] = value
        elif value not in (None, ""):
            scaling[key] = _number("value_scaling", value)
    return scaling


def _value_scaling(values: Mapping[str, Any]) -> Any:
    scaling = values.get("value_scaling")
    if scaling in (None, "", []):
        return None
    if scaling == "none":
        return "none"
    if isinstance(scaling, Mapping):  # by input name (several image inputs)
        by_input = {}
        for name, entries in scaling.items():
            if not isinstance(entries, list):
                raise FieldError(
                    f"value_scaling of input {name!r}: expected rows.",
                    hint="With several inputs, give rows for each input whose scaling is known.",
                    field="value_scaling",
                )
            by_input[str(name)] = [_scaling_entry(entry) for entry in entries]
        return by_input or None
    if not isinstance(scaling, list):
        raise FieldError("value_scaling: expected a list.", hint="Add one row per band or one.", field="value_scaling")
    return [_scaling_entry(entry) for entry in scaling]


def _band_list(names: Any) -> list[str]:
    if not isinstance(names, list):
        raise FieldError("bands: expected a list of band names.", hint="Type one band name per line.", field="bands")
    return [str(b).strip() for b in names if str(b).strip()]


def _bands(values: Mapping[str, Any]) -> list[str] | dict[str, list[str]] | None:
    """Band names of the first image input (a list), or by input name (several image inputs)."""
    bands = values.get("bands")
    if isinstance(bands, Mapping):
        by_input = {str(name): _band_list(names) for name, names in bands.items()}
        return {name: names for name, names in by_input.items() if names} or None
    return _band_list(bands or []) or None


def _classes(values: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    rows = values.get("classes")
    if not rows:
        return None
    classes = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise FieldError(f"classes: row {index + 1} is not a class.", hint="Fill the table.", field="classes")
        value = row.get("value")
        entry: dict[str, Any] = {
            "value": index if value in (None, "") else value,
            "name": str(row.get("name") or "").strip(),
        }
        if isinstance(entry["value"], str):
            try:
                entry["value"] = int(entry["value"])
            except ValueError:
                raise FieldError(f"classes: value {entry['value']!r} is not an integer.", field="classes") from None
        if row.get("description"):
            entry["description"] = str(row["description"])
        colour = str(row.get("color_hint") or "").lstrip("#")
        if colour:
            entry["color_hint"] = colour.upper()
        classes.append(entry)
    return classes


def _links(values: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    links = []
    for row in values.get("derived_from") or []:
        href = str(row.get("href") or "").strip()
        if not href:
            continue
        link: dict[str, Any] = {"rel": "derived_from", "href": href}
        if row.get("title"):
            link["title"] = str(row["title"])
        if row.get("split"):
            link["ml-aoi:split"] = str(row["split"])
        links.append(link)
    return links or None


def _time(values: Mapping[str, Any]) -> dict[str, Any]:
    start, end, when = _text(values, "start_datetime"), _text(values, "end_datetime"), _text(values, "datetime")
    if start or end:
        return {"start_datetime": start, "end_datetime": end}
    return {"datetime": when} if when else {}


#: Text fields passed as they are (stripped; left out when empty).
TEXT_ARGUMENTS = (
    "name", "description", "license", "doi", "citation", "container", "source_code", "collection", "pretrained_source",
)  # fmt: skip


def export_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``export_item`` keyword argument the form's values give (the measuring ones included).

    Raises:
        FieldError: a value cannot become its argument (the error names the field).
    """
    arguments = measure_arguments(values)
    for key in TEXT_ARGUMENTS:
        text = _text(values, key)
        if text is not None:
            arguments[key] = text
    tasks = [t for t in values.get("tasks") or [] if t]
    if tasks:
        arguments["tasks"] = tasks
    optional = {
        "bands": _bands(values),
        "value_scaling": _value_scaling(values),
        "classes": _classes(values),
        "bbox": _bbox(values),
        "links": _links(values),
        "resize_type": _text(values, "resize_type"),
        "artifact_format": _text(values, "artifact_format"),
    }
    arguments.update({k: v for k, v in optional.items() if v is not None})
    arguments.update(_time(values))
    if values.get("pretrained") in (True, False):
        arguments["pretrained"] = values["pretrained"]
    return arguments


#: JSON pointer prefixes of the Item -> form field (the first that matches wins).
POINTER_FIELDS: tuple[tuple[str, str], ...] = (
    ("/bbox", "bbox"),
    ("/geometry", "bbox"),
    ("/properties/start_datetime", "time"),
    ("/properties/end_datetime", "time"),
    ("/properties/datetime", "time"),
    ("/properties/mlm:name", "name"),
    ("/properties/mlm:tasks", "tasks"),
    ("/properties/license", "license"),
    ("/properties/sci:doi", "doi"),
    ("/properties/sci:citation", "citation"),
    ("/properties/description", "description"),
    ("/properties/mlm:pretrained_source", "pretrained_source"),
    ("/properties/mlm:output", "classes"),
    ("/assets/mlm:container", "container"),
    ("/assets/mlm:source_code", "source_code"),
    ("/links", "derived_from"),
    ("/collection", "collection"),
)
_INPUT_FIELD = re.compile(r"^/properties/mlm:input/\d+/(?P<key>[a-z_]+)")
_BAND_FIELD = re.compile(r"^/(properties|assets/[^/]+)/(bands|eo:bands)")


def field_of_pointer(pointer: str) -> str:
    """The form field a validation problem at ``pointer`` (a JSON pointer into the Item) belongs to."""
    match = _INPUT_FIELD.match(pointer)
    if match:
        key = match["key"]
        return {"bands": "bands", "value_scaling": "value_scaling", "resize_type": "resize_type"}.get(key, "model")
    if _BAND_FIELD.match(pointer):
        return "bands"
    for prefix, field in POINTER_FIELDS:
        if pointer == prefix or pointer.startswith(prefix + "/"):
            return field
    return "general"


#: Argument names a library message may name -> form field (``start_datetime=`` -> the time range...).
_ARGUMENT_FIELDS = {
    "start_datetime": "time", "end_datetime": "time", "datetime": "time", "links": "derived_from",
    "geometry": "bbox", "trust_pickle": "trust_pickle", "model_class": "model_class", "model_kwargs": "model_kwargs",
    "input_shape": "input_shape",
}  # fmt: skip
_FIELDS = (*TEXT_ARGUMENTS, "tasks", "bands", "value_scaling", "classes", "bbox", "resize_type", "artifact_format")
_NAMES = "|".join(sorted({*_FIELDS, *_ARGUMENT_FIELDS}, key=len, reverse=True))
#: ``bands=`` as the library names its arguments; else the bare word (never inside a dotted name).
_WORDS = "|".join(("bbox", "bands", "classes", "tasks", "value_scaling", "resize_type", "start_datetime",
                   "end_datetime", "datetime", "model_class", "model_kwargs", "input_shape", "doi"))  # fmt: skip
_NAMED = (re.compile(rf"(?<![\w.])({_NAMES})="), re.compile(rf"(?<![\w.-])({_WORDS})(?![\w.-])"))


def field_of_error(error: BaseException) -> str:
    """The form field a typed error of the library is about (the first argument its message names), else general."""
    from mlm_export.errors import UntrustedPickleError

    if isinstance(error, FieldError):
        return error.field
    if isinstance(error, UntrustedPickleError):
        return "trust_pickle"
    for pattern in _NAMED:
        match = pattern.search(str(error))
        if match is not None:
            return _ARGUMENT_FIELDS.get(match[1], match[1])
    return "general"


def form_options() -> dict[str, Any]:
    """The choices the page offers: tasks, scaling types and their keys, resize types, formats, presets, splits."""
    return {
        "tasks": list(TASKS),
        "value_scaling": {kind: list(keys) for kind, keys in VALUE_SCALING_KEYS.items()},
        "resize_types": list(RESIZE_TYPES),
        "artifact_formats": list(ARTIFACT_FORMATS),
        "band_presets": BAND_PRESETS,
        "splits": list(SPLITS),
        "licenses": spdx_licenses(),
    }


def spdx_licenses() -> list[str]:
    """SPDX license ids (not deprecated), from the list ``packaging`` ships; a short list when it is too old."""
    try:
        from packaging.licenses._spdx import LICENSES  # packaging >= 24.2: the SPDX license list it validates with
    except ImportError:  # pragma: no cover - older packaging
        return ["Apache-2.0", "BSD-3-Clause", "CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0", "GPL-3.0-only", "MIT"]
    return sorted(entry["id"] for entry in LICENSES.values() if not entry["deprecated"])


def python_call(model: str, arguments: Mapping[str, Any]) -> str:
    """The ``export_item`` call the form makes, as Python a person can paste (the model file by its name)."""
    lines = [f"    {key}={value!r}," for key, value in arguments.items()]
    return "\n".join([f"export_item({model!r},", *lines, ")"])
