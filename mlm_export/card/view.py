"""Read an MLM Item (untrusted JSON) into the plain view model the card templates show.

Every value is read defensively: a field of the wrong type is treated as absent, never trusted to be a string or a
list. Nothing here escapes text: the templates do (Jinja2 autoescape for HTML, a Markdown finalizer for Markdown).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mlm_export.card.map import Footprint, footprint

_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")
_DOI = re.compile(r"10\.\d{4,9}/\S+")


def text(value: Any) -> str:
    """A displayable string of a scalar JSON value ("" for null, lists and objects)."""
    if value is None or isinstance(value, (list, dict)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def as_list(value: Any) -> list[Any]:
    """The value if it is a list, else []."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> Mapping[str, Any]:
    """The value if it is an object, else {}."""
    return value if isinstance(value, Mapping) else {}


def human_bytes(size: Any) -> str:
    """``12.3 MiB`` for a byte count; "" when it is not a non-negative integer."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def safe_href(href: Any) -> str | None:
    """The href if it may become a link: http(s) URLs and relative paths; None for javascript:, data:, file:, ..."""
    if not isinstance(href, str) or not href.strip() or any(ord(c) < 32 or c == "\\" for c in href):
        return None
    scheme = urlsplit(href).scheme.lower()
    if scheme in ("http", "https") or (not scheme and not href.startswith("//") and ":" not in href.split("/")[0]):
        return href
    return None


def colour(value: Any) -> str | None:
    """CSS ``#rrggbb`` of a ``color_hint``: a hex string (classification extension) or an RGB array (old examples)."""
    if isinstance(value, str):
        match = _HEX_COLOUR.fullmatch(value.strip())
        return f"#{match.group(1).lower()}" if match else None
    if isinstance(value, list) and len(value) in (3, 4):
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value[:3]):
            return "#" + "".join(f"{c:02x}" for c in value[:3])
    return None


@dataclass
class Dim:
    """One tensor axis: its name and its size ("any" for -1)."""

    name: str
    size: str


@dataclass
class Band:
    """One input band or variable with its scaling and what the Item's band definitions say about it."""

    name: str
    details: str = ""
    scaling: str = ""


@dataclass
class Tensor:
    """An input or output of the model."""

    name: str
    dims: list[Dim]
    data_type: str
    description: str = ""
    tasks: list[str] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)
    classes: list[ClassEntry] = field(default_factory=list)
    band_label: str = "band"


@dataclass
class ClassEntry:
    """One output class."""

    value: str
    name: str
    description: str
    colour: str | None
    nodata: bool


@dataclass
class Asset:
    """One asset of the Item."""

    key: str
    title: str
    roles: list[str]
    media_type: str
    size: str
    checksum: str
    href: str
    link: str | None
    kind: str


@dataclass
class Reference:
    """A derived_from dataset, a publication or another provenance link."""

    label: str
    href: str = ""
    link: str | None = None
    detail: str = ""


@dataclass
class Card:
    """Everything a card shows, as plain strings and lists."""

    id: str
    name: str
    kind: str
    description: str
    tasks: list[str]
    framework: str
    licence: str
    footprint: Footprint
    temporal: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[Tensor]
    runtime: list[tuple[str, str]]
    assets: list[Asset]
    provenance: list[Reference]
    citations: list[Reference]
    raw_json: str
    validation: str = "not checked"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _dims(spec: Mapping[str, Any]) -> list[Dim]:
    shape, order = as_list(spec.get("shape")), as_list(spec.get("dim_order"))
    dims = []
    for index in range(max(len(shape), len(order))):
        size = shape[index] if index < len(shape) else None
        name = text(order[index]) if index < len(order) else f"axis {index}"
        dims.append(Dim(name, "any" if size == -1 else text(size) or "?"))
    return dims


def _scaling_text(scaling: Any) -> str:
    """``z-score mean=1354 stddev=245.7`` for one value_scaling object."""
    scaling = as_dict(scaling)
    if not scaling:
        return ""
    rest = [f"{k}={text(v) or json.dumps(v, default=str)}" for k, v in scaling.items() if k != "type"]
    return " ".join([text(scaling.get("type")) or "scaling", *rest])


def _band_definitions(document: Mapping[str, Any]) -> dict[str, str]:
    """Band name -> "common name, wavelength" from the Item's eo:bands / bands / raster:bands (item and assets)."""
    holders = [as_dict(document.get("properties"))] + [as_dict(a) for a in as_dict(document.get("assets")).values()]
    found: dict[str, str] = {}
    for holder in holders:
        for key in ("bands", "eo:bands", "raster:bands"):
            for band in as_list(holder.get(key)):
                band = as_dict(band)
                name = text(band.get("name"))
                common = text(band.get("eo:common_name") or band.get("common_name"))
                wavelength = text(band.get("eo:center_wavelength") or band.get("center_wavelength"))
                detail = ", ".join(p for p in (common, f"{wavelength} µm" if wavelength else "") if p)
                if name and detail and name not in found:
                    found[name] = detail
    return found


def _input(spec: Mapping[str, Any], definitions: Mapping[str, str]) -> Tensor:
    tensor = as_dict(spec.get("input"))
    names = [text(as_dict(b).get("name")) if isinstance(b, Mapping) else text(b) for b in as_list(spec.get("bands"))]
    names += [text(v) for v in as_list(spec.get("variables"))]
    scalings = as_list(spec.get("value_scaling"))
    per_band = len(scalings) == len(names) and len(scalings) > 1
    bands = [
        Band(name, definitions.get(name, ""), _scaling_text(scalings[i]) if per_band else "")
        for i, name in enumerate(names)
    ]
    for band, raw in zip(bands, as_list(spec.get("bands")), strict=False):
        expression = as_dict(as_dict(raw).get("expression"))
        if expression:
            band.details = ", ".join(
                p
                for p in (band.details, f"{text(expression.get('format'))}: {text(expression.get('expression'))}")
                if p
            )
    rows = []
    if scalings and not per_band:
        rows.append(("value scaling", "; ".join(s for s in map(_scaling_text, scalings) if s)))
    for key, label in (
        ("norm_by_channel", "normalised by channel"),
        ("norm_type", "normalisation"),
        ("resize_type", "resize"),
        ("description", "description"),
    ):
        if text(spec.get(key)):
            rows.append((label, text(spec.get(key))))
    rows += _processing_rows(spec.get("pre_processing_function"), "pre-processing")
    label = "variable" if not as_list(spec.get("bands")) and as_list(spec.get("variables")) else "band"
    return Tensor(
        text(spec.get("name")), _dims(tensor), text(tensor.get("data_type")), bands=bands, rows=rows, band_label=label
    )


def _processing_rows(value: Any, label: str) -> list[tuple[str, str]]:
    """Rows for a pre/post-processing expression (or a list of them)."""
    rows = []
    for item in as_list(value) or [value]:
        item = as_dict(item)
        if not item:
            continue
        expression = item.get("expression")
        shown = text(expression) or text(as_dict(expression).get("href")) or json.dumps(expression, default=str)
        form = text(item.get("format"))
        rows.append((label, f"{form}: {shown}" if form else shown))
    return rows


def _classes(spec: Mapping[str, Any]) -> list[ClassEntry]:
    raw = as_list(spec.get("classification:classes")) or as_list(spec.get("classification_classes"))
    entries = []
    for entry in raw:
        entry = as_dict(entry)
        title, name = text(entry.get("title")), text(entry.get("name"))
        label = f"{title} ({name})" if title and name and title != name else title or name
        entries.append(
            ClassEntry(
                text(entry.get("value")),
                label,
                text(entry.get("description")),
                colour(entry.get("color_hint") if "color_hint" in entry else entry.get("color-hint")),
                entry.get("nodata") is True,
            )
        )
    return entries


def _output(spec: Mapping[str, Any]) -> Tensor:
    result = as_dict(spec.get("result"))
    rows = _processing_rows(spec.get("post_processing_function"), "post-processing")
    if text(spec.get("description")):
        rows.insert(0, ("description", text(spec.get("description"))))
    variables = [Band(text(v)) for v in as_list(spec.get("variables"))]
    tasks = [text(t) for t in as_list(spec.get("tasks")) if text(t)]
    return Tensor(
        text(spec.get("name")),
        _dims(result),
        text(result.get("data_type")),
        tasks=tasks,
        bands=variables,
        rows=rows,
        classes=_classes(spec),
    )


def _model_asset(document: Mapping[str, Any]) -> Mapping[str, Any]:
    for asset in as_dict(document.get("assets")).values():
        if "mlm:model" in as_list(as_dict(asset).get("roles")):
            return as_dict(asset)
    return {}


def _runtime(properties: Mapping[str, Any], model: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of what running the model costs; MLM fields may sit on the model asset too."""

    def get(key: str) -> Any:
        return properties.get(key) if properties.get(key) is not None else model.get(key)

    def count(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else text(value)

    size = get("file:size")
    rows = [
        ("architecture", text(get("mlm:architecture"))),
        ("parameters", count(get("mlm:total_parameters"))),
        ("memory", human_bytes(get("mlm:memory_size"))),
        ("model file size", human_bytes(size) + (f" ({size:,} bytes)" if human_bytes(size) else "")),
        ("artifact type", text(model.get("mlm:artifact_type"))),
        ("accelerator", text(get("mlm:accelerator"))),
        ("accelerator constrained", text(get("mlm:accelerator_constrained"))),
        ("accelerator summary", text(get("mlm:accelerator_summary"))),
        ("accelerator count", count(get("mlm:accelerator_count"))),
        ("batch size suggestion", count(get("mlm:batch_size_suggestion"))),
        ("pretrained", text(get("mlm:pretrained"))),
        ("pretrained source", text(get("mlm:pretrained_source"))),
    ]
    return [(label, value) for label, value in rows if value]


def _asset_kind(roles: list[str]) -> str:
    for role, kind in (
        ("mlm:model", "model"),
        ("mlm:source_code", "source code"),
        ("mlm:container", "container"),
        ("mlm:training", "training"),
        ("mlm:inference", "inference"),
    ):
        if role in roles:
            return kind
    return ""


def _assets(document: Mapping[str, Any]) -> list[Asset]:
    assets = []
    for key, asset in as_dict(document.get("assets")).items():
        asset = as_dict(asset)
        roles = [text(r) for r in as_list(asset.get("roles")) if text(r)]
        href = text(asset.get("href"))
        assets.append(
            Asset(
                text(key),
                text(asset.get("title")),
                roles,
                text(asset.get("type")),
                human_bytes(asset.get("file:size")),
                text(asset.get("file:checksum")),
                href,
                safe_href(href),
                _asset_kind(roles),
            )
        )
    return assets


def _provenance(document: Mapping[str, Any]) -> list[Reference]:
    """derived_from datasets (with their ml-aoi split) and other provenance links."""
    references = []
    for link in as_list(document.get("links")):
        link = as_dict(link)
        rel = text(link.get("rel"))
        if rel not in ("derived_from", "via", "code", "cite-as", "license"):
            continue
        href = text(link.get("href"))
        split = text(link.get("ml-aoi:split"))
        detail = rel.replace("_", " ") + (f", split: {split}" if split else "")
        references.append(Reference(text(link.get("title")) or href, href, safe_href(href), detail))
    return references


def _doi_link(doi: str) -> str | None:
    return f"https://doi.org/{doi}" if _DOI.fullmatch(doi) else None


def _citations(properties: Mapping[str, Any]) -> list[Reference]:
    """The scientific extension's citation, DOI and publications."""
    citations = []
    doi = text(properties.get("sci:doi"))
    if doi or text(properties.get("sci:citation")):
        citations.append(Reference(text(properties.get("sci:citation")) or doi, doi, _doi_link(doi), "this model"))
    for publication in as_list(properties.get("sci:publications")):
        publication = as_dict(publication)
        doi = text(publication.get("doi"))
        citations.append(Reference(text(publication.get("citation")) or doi, doi, _doi_link(doi), "publication"))
    return [c for c in citations if c.label]


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or value in ("", ".."):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def temporal(document: Mapping[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """Start/end labels and the bar's geometry, in percent of an axis that spans the model's own interval.

    The axis runs from the start to the end date shown under it, so the range fills the bar; ``today`` is the
    position of today's mark when today lies inside the interval, else None (no mark). An open end runs to today; an
    open start, or a single instant, has no scale (the bar is full, or a mark in the middle, with no today).
    """
    properties = as_dict(document.get("properties"))
    start_raw, end_raw = properties.get("start_datetime"), properties.get("end_datetime")
    if document.get("type") == "Collection":
        intervals = as_list(as_dict(as_dict(document.get("extent")).get("temporal")).get("interval"))
        first = as_list(intervals[0]) if intervals else []
        start_raw, end_raw = (first + [None, None])[:2]
    instant = _parse_time(properties.get("datetime"))
    start, end = _parse_time(start_raw) or instant, _parse_time(end_raw) or instant
    if start is None and end is None:
        return {"known": False, "label": "unknown"}
    now = now or dt.datetime.now(dt.UTC)
    labels = {
        "known": True,
        "start": start.date().isoformat() if start else "open",
        "end": end.date().isoformat() if end else "open",
    }
    if start is not None and end is not None and start == end:
        return {**labels, "left": 49.7, "width": 0.6, "today": None, "label": "instant"}
    if start is None:  # open start: no scale to place today on
        return {**labels, "left": 0.0, "width": 100.0, "today": None, "label": ""}
    low, high = (start, end) if end is not None else (start, max(now, start))
    low, high = min(low, high), max(low, high)
    span = (high - low).total_seconds()
    inside = low <= now <= high and span > 0
    today = round(100 * (now - low).total_seconds() / span, 2) if inside else None
    return {**labels, "left": 0.0, "width": 100.0, "today": today, "label": ""}


def build_card(document: Mapping[str, Any]) -> Card:
    """The view model of an Item (or Collection) document."""
    properties = as_dict(document.get("properties"))
    if document.get("type") == "Collection":
        properties = {
            **as_dict(document.get("summaries")),
            "title": document.get("title"),
            "description": document.get("description"),
            "license": document.get("license"),
        }
    definitions = _band_definitions(document)
    model = _model_asset(document)
    framework = " ".join(
        p
        for p in (
            text(properties.get("mlm:framework") or model.get("mlm:framework")),
            text(properties.get("mlm:framework_version") or model.get("mlm:framework_version")),
        )
        if p
    )
    tasks = [text(t) for t in as_list(properties.get("mlm:tasks")) if text(t)]
    return Card(
        id=text(document.get("id")),
        name=text(properties.get("mlm:name")) or text(properties.get("title")) or text(document.get("id")),
        kind="Collection" if document.get("type") == "Collection" else "Item",
        description=text(properties.get("description")),
        tasks=tasks,
        framework=framework,
        licence=text(properties.get("license")) or text(document.get("license")),
        footprint=footprint(document),
        temporal=temporal(document),
        inputs=[_input(as_dict(s), definitions) for s in as_list(properties.get("mlm:input"))],
        outputs=[_output(as_dict(s)) for s in as_list(properties.get("mlm:output"))],
        runtime=_runtime(properties, model),
        assets=_assets(document),
        provenance=_provenance(document),
        citations=_citations(properties),
        raw_json=json.dumps(document, indent=2, ensure_ascii=False, default=str),
    )
