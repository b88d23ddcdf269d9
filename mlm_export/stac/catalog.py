"""A self-contained STAC Collection of model Items, and a search over it ("which model fits my data?").

Layout written by :func:`build_catalog`::

    DIR/collection.json            the Collection: extent, summaries, one ``item`` link per model
    DIR/<item id>/<item id>.json   one Item per model (the pystac "best practices" layout)

Every href between these files is relative (``catalog_type=SELF_CONTAINED``: no ``self`` links), so the directory
can be moved or published as is. Local asset hrefs are rewritten relative to the Item's new location; URLs stay.

**Summaries.** MLM v1.5.2 validates *each* ``summaries`` value of a Collection that declares MLM as an object of
MLM fields, so the usual arrays of values (``{"mlm:tasks": ["classification"]}``) fail. STAC allows two other
summary forms, both objects, and both pass: a JSON Schema (used here with ``enum`` for sets of values) and a Range
(``{"minimum", "maximum"}`` for numbers). The Collection therefore declares MLM and summarizes ``mlm:tasks``,
``mlm:framework``, ``mlm:architecture`` and ``mlm:accelerator`` as JSON Schemas, ``mlm:total_parameters`` and
``mlm:memory_size`` as Ranges, and the input band names as a JSON Schema of STAC 1.1 ``bands``.

**Specificity score** of a :class:`SearchHit`: the product of one factor in (0, 1] per criterion of the query,
1 meaning an exact fit (``framework`` only filters):

- ``bbox``: ``(I / Q) * (I / F)`` with I the area of the intersection of the query box Q and the model footprint F
  (its bbox), in degrees², each plus ``AREA_EPSILON`` so a point query works: the share of the query the model
  covers times the share of the model's area the query is. A model containing the query scores Q / F, so the
  smallest containing footprint ranks first; a box equal to the query scores 1.
- ``datetime``: the same with durations in days, each plus one day (an instant counts as one day); the first
  factor is left out when the query is open-ended. Open ends of a model's range count as year 1 / 9999.
- ``bands``: the share of the given bands the model reads (it must read nothing else); 1 when the sets are equal.
- ``task``: the share of the model's tasks that answer the query (a single-task model is the most specific).
- ``input_channels``: 1 for an input with exactly that many channels, 0.5 for a dynamic (-1) channel dimension.

Hits are sorted by score (highest first), then by item id. A model without a bbox never matches a ``bbox`` query,
and one whose inputs name no bands never matches a ``bands`` query (use ``input_channels`` for those).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pystac
from pystac.utils import datetime_to_str, make_absolute_href, str_to_datetime
from shapely.geometry import LineString, Point, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from mlm_export.description import TASKS
from mlm_export.errors import ConfigurationError, ItemValidationError, OutputError, OutputExistsError
from mlm_export.provenance.container import is_registry_reference
from mlm_export.stac.builder import MLM_SCHEMA_URI
from mlm_export.stac.validate import read_json_object
from mlm_export.stac.writer import item_to_json_dict, write_json_atomic

if TYPE_CHECKING:
    from mlm_export.stac.validate import ValidationReport

COLLECTION_FILE = "collection.json"
#: Added to every area (degrees²) so that point and line queries still rank footprints by size (~110 m x 110 m).
AREA_EPSILON = 1e-6
#: Added to every duration (days) so that instants still rank ranges by length.
DURATION_EPSILON_DAYS = 1.0
#: Score factor of an input whose channel dimension is dynamic (-1) when ``input_channels`` is asked for.
DYNAMIC_CHANNELS_FACTOR = 0.5
#: Generic MLM tasks and the more specific tasks that answer a query for them.
TASK_FAMILIES: dict[str, tuple[str, ...]] = {
    "classification": ("scene-classification",),
    "detection": ("object-detection",),
    "segmentation": ("semantic-segmentation", "instance-segmentation", "panoptic-segmentation"),
}

_MLM_PREFIXES = ("https://stac-extensions.github.io/mlm/", "https://crim-ca.github.io/mlm-extension/")
_STRUCTURAL_RELS = {"self", "root", "parent", "collection"}
_CHANNEL_DIMS = ("bands", "channel", "channels")
_EARLIEST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
_PERIOD = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_ID = re.compile(r"[/\\\x00]|^\.|^$")

ItemSource = pystac.Item | Mapping[str, Any] | str | os.PathLike[str]


# --------------------------------------------------------------------------------------------------- shared helpers
@dataclass(frozen=True)
class _Entry:
    """One Item document with where it came from (``base``: directory its relative hrefs resolve against)."""

    document: dict[str, Any]
    source: str
    base: Path | None
    href: str | None = None


def _is_url(href: str) -> bool:
    scheme = urlparse(href).scheme
    return len(scheme) > 1 and scheme != "file"


def _check_item(document: Mapping[str, Any], source: str) -> None:
    kind = document.get("type")
    if kind != "Feature":
        raise ConfigurationError(
            f"{source} is not a STAC Item: its type is {kind!r}, not 'Feature'.",
            hint="Pass model Item JSON files (e.g. written by mlm-export export), not Collections or Catalogs.",
        )
    item_id = document.get("id")
    if not isinstance(item_id, str) or not isinstance(document.get("properties"), Mapping):
        raise ConfigurationError(f"{source} is not a STAC Item: it lacks a string 'id' or a 'properties' object.")
    extensions = document.get("stac_extensions") or []
    if not any(isinstance(u, str) and u.startswith(_MLM_PREFIXES) for u in extensions):
        raise ConfigurationError(
            f"{source} (item {item_id!r}) is not a model Item: it does not declare the MLM extension.",
            hint=f"Add {MLM_SCHEMA_URI} to stac_extensions, or export the model with mlm-export.",
        )


def _entry(item: ItemSource) -> _Entry:
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        document = read_json_object(path, "Item file", ConfigurationError)
        entry = _Entry(document, f"'{path}'", path.resolve().parent, str(path))
    elif isinstance(item, pystac.Item):
        self_href = item.get_self_href()
        base = Path(self_href).resolve().parent if self_href and not _is_url(self_href) else None
        document = item.to_dict(include_self_link=False, transform_hrefs=False)
        entry = _Entry(document, f"item {item.id!r}", base, self_href)
    elif isinstance(item, Mapping):
        document = copy.deepcopy(dict(item))
        entry = _Entry(document, f"item {item.get('id')!r}", None)
    else:
        raise ConfigurationError(
            f"items: cannot use an object of type {type(item).__name__}.",
            hint="Pass pystac.Items, dicts or paths of Item JSON files.",
        )
    _check_item(entry.document, entry.source)
    return entry


# ----------------------------------------------------------------------------------------------- space and time
def _bbox_2d(values: Sequence[Any]) -> tuple[float, float, float, float]:
    if len(values) == 6:
        return float(values[0]), float(values[1]), float(values[3]), float(values[4])
    return float(values[0]), float(values[1]), float(values[2]), float(values[3])


def _footprint_of(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    west, south, east, north = bbox
    if west <= east:
        return box(west, south, east, north)
    return unary_union([box(west, south, 180.0, north), box(-180.0, south, east, north)])  # crosses 180°


def _item_bbox(document: Mapping[str, Any], source: str) -> tuple[tuple[float, float, float, float] | None, str]:
    """The item's bbox as (west, south, east, north) in -180..180, and a note when it had to be repaired."""
    raw = document.get("bbox")
    if raw is None:
        return None, ""
    try:
        west, south, east, north = _bbox_2d(raw)
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigurationError(f"{source} has a malformed bbox {raw!r}.") from exc
    repairs = []
    if south > north:
        south, north = north, south
        repairs.append("south > north")
    if west > 180.0 or east > 180.0:  # 0..360 longitudes
        west = west - 360.0 if west > 180.0 else west
        east = east - 360.0 if east > 180.0 else east
        repairs.append("0..360 longitudes")
    bbox = (west, south, east, north)
    note = f"{source}: bbox {list(raw)} has {' and '.join(repairs)}; read as {list(bbox)}." if repairs else ""
    return bbox, note


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _period_end(text: str, start: dt.datetime) -> dt.datetime:
    """Last instant of the year, month or day written as ``text`` (``2020``, ``2020-06``, ``2020-06-01``)."""
    if len(text) == 4:
        following = start.replace(year=start.year + 1) if start.year < 9999 else _LATEST
    elif len(text) == 7:
        following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    else:
        following = start + dt.timedelta(days=1)
    return min(following - dt.timedelta(microseconds=1), _LATEST)


def _instant(value: Any, argument: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Start and end of one query bound: an instant, or a whole year/month/day written as a date."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "..")):
        return None, None
    if isinstance(value, dt.datetime):
        return _utc(value), _utc(value)
    if isinstance(value, dt.date):
        start = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return start, start + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    if not isinstance(value, str):
        raise ConfigurationError(f"{argument}: expected an ISO 8601 string or a datetime, got {type(value).__name__}.")
    text = value.strip()
    try:
        start = _utc(str_to_datetime(text))
    except (ValueError, OverflowError) as exc:
        raise ConfigurationError(
            f"{argument}: {value!r} is not an ISO 8601 date-time.",
            hint="Use e.g. 2020-06-01T00:00:00Z, 2020-06-01, or an interval 2020-01-01/2021-01-01 ('..' = open).",
        ) from exc
    return (start, _period_end(text, start)) if _PERIOD.match(text) else (start, start)


def _query_interval(value: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    if isinstance(value, str) and "/" in value:
        parts = value.split("/")
        if len(parts) != 2:
            raise ConfigurationError(f"datetime: {value!r} has more than one '/'.", hint="Use START/END.")
        start, end = _instant(parts[0], "datetime")[0], _instant(parts[1], "datetime")[1]
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigurationError(f"datetime: expected (start, end), got {len(value)} values.")
        start, end = _instant(value[0], "datetime")[0], _instant(value[1], "datetime")[1]
    else:
        start, end = _instant(value, "datetime")
    if start is not None and end is not None and end < start:
        raise ConfigurationError(
            f"datetime: the interval {value!r} ends before it starts.", hint="Write START/END with START <= END."
        )
    return start, end


def _interval_text(value: Any) -> str:
    """The datetime query as the user wrote it, for the reasons of a hit."""
    if isinstance(value, (tuple, list)):
        return "/".join(".." if v is None else v.isoformat() if isinstance(v, dt.date) else str(v) for v in value)
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _item_interval(document: Mapping[str, Any], source: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of an item; None for an open end. A plain ``datetime`` is an instant."""
    props = document.get("properties") or {}

    def parse(key: str) -> dt.datetime | None:
        value = props.get(key)
        if value is None:
            return None
        try:
            return _utc(str_to_datetime(value))
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigurationError(f"{source}: properties.{key} {value!r} is not an ISO 8601 date-time.") from exc

    start, end = parse("start_datetime"), parse("end_datetime")
    if start is None and end is None:
        instant = parse("datetime")
        return instant, instant
    return start, end


def _days(start: dt.datetime, end: dt.datetime) -> float:
    return max((end - start).total_seconds(), 0.0) / 86400.0


# -------------------------------------------------------------------------------------------------------- build
def _enum_schema(values: Iterable[Any], *, array: bool = False) -> dict[str, Any]:
    present = {v for v in values}
    ordered = sorted((v for v in present if v is not None), key=lambda v: str(v).lower())
    types = sorted({"boolean" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "string"
                    for v in ordered})  # fmt: skip
    if None in present:
        ordered.append(None)
        types.append("null")
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types, "enum": ordered}
    return {"type": "array", "items": schema} if array else schema


def _summaries(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Collection summaries, each an object (JSON Schema or Range) so that they pass MLM's Collection rule."""
    props = [d.get("properties") or {} for d in documents]
    summaries: dict[str, Any] = {}
    tasks = [t for p in props for t in p.get("mlm:tasks") or [] if isinstance(t, str)]
    if tasks:
        summaries["mlm:tasks"] = _enum_schema(tasks, array=True)
    for key in ("mlm:framework", "mlm:architecture"):
        values = [p[key] for p in props if isinstance(p.get(key), str)]
        if values:
            summaries[key] = _enum_schema(values)
    # A missing mlm:accelerator means null (any accelerator, none required).
    summaries["mlm:accelerator"] = _enum_schema(p.get("mlm:accelerator") for p in props)
    for key in ("mlm:total_parameters", "mlm:memory_size"):
        numbers = [p[key] for p in props if isinstance(p.get(key), int) and not isinstance(p.get(key), bool)]
        if numbers:
            summaries[key] = {"minimum": min(numbers), "maximum": max(numbers)}
    bands = sorted({name for d in documents for name in _input_band_names(d)})
    if bands:
        name_schema = {"type": "string", "enum": bands}
        summaries["bands"] = {"type": "array", "items": {"type": "object", "properties": {"name": name_schema}}}
    return summaries


def _extent(entries: list[_Entry]) -> dict[str, Any]:
    footprints = []
    for entry in entries:
        bbox, note = _item_bbox(entry.document, entry.source)
        if note:
            warnings.warn(note, stacklevel=4)  # build_catalog's caller
        if bbox is not None:
            footprints.append(_footprint_of(bbox))
    bounds = list(unary_union(footprints).bounds) if footprints else [-180.0, -90.0, 180.0, 90.0]
    intervals = [_item_interval(e.document, e.source) for e in entries]
    starts = [s for s, _ in intervals]
    ends = [e for _, e in intervals]
    start = None if not starts or any(s is None for s in starts) else min(s for s in starts if s is not None)
    end = None if not ends or any(e is None for e in ends) else max(e for e in ends if e is not None)
    return {
        "spatial": {"bbox": [bounds]},
        "temporal": {"interval": [[datetime_to_str(start) if start else None, datetime_to_str(end) if end else None]]},
    }


def _absolute_href(href: Any, base: Path | None, where: str) -> str:
    """``href`` made absolute against ``base``; URLs and absolute paths are kept."""
    if not isinstance(href, str) or not href:
        raise ConfigurationError(f"{where} has no href (got {href!r}).", hint="Every asset and link needs an href.")
    if _is_url(href) or urlparse(href).scheme == "file" or os.path.isabs(href):
        return href
    if base is None:
        raise ConfigurationError(
            f"{where} has the relative href {href!r} but the item has no location to resolve it against.",
            hint="Pass the item as a file path (or a pystac.Item with a self href), or make the href absolute.",
        )
    return os.path.realpath(make_absolute_href(href, str(base / "item.json")))


def _catalog_item(entry: _Entry, collection_id: str, collection_title: str | None) -> dict[str, Any]:
    """The item document for the catalog: local hrefs absolute, structural links replaced, ``collection`` set."""
    document = dict(entry.document)
    item_id = document["id"]
    where = f"{entry.source} (item {item_id!r})"
    assets = {}
    for key, asset in (document.get("assets") or {}).items():
        asset = dict(asset)
        if not is_registry_reference(asset):  # an image in a registry (mlm:container) is no file
            asset["href"] = _absolute_href(asset.get("href"), entry.base, f"{where} asset {key!r}")
        assets[key] = asset
    document["assets"] = assets
    links: list[dict[str, Any]] = []
    for link in document.get("links") or []:
        if not isinstance(link, Mapping) or link.get("rel") in _STRUCTURAL_RELS:
            continue
        link = dict(link)
        link["href"] = _absolute_href(link.get("href"), entry.base, f"{where} link rel={link.get('rel')!r}")
        links.append(link)
    parent = {"href": f"../{COLLECTION_FILE}", "type": "application/json"}
    if collection_title:
        parent["title"] = collection_title
    links[:0] = [{"rel": rel, **parent} for rel in ("root", "parent", "collection")]
    document["links"] = links
    document["collection"] = collection_id
    return document


def _item_title(document: Mapping[str, Any]) -> str | None:
    props = document.get("properties") or {}
    title = props.get("title") or props.get("mlm:name")
    return title if isinstance(title, str) else None


def _collection_document(
    entries: list[_Entry], collection_id: str, title: str | None, description: str | None
) -> dict[str, Any]:
    documents = [e.document for e in entries]
    licenses = {(d.get("properties") or {}).get("license") for d in documents}
    license_ = licenses.pop() if len(licenses) == 1 and isinstance(next(iter(licenses)), str) else "other"
    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [MLM_SCHEMA_URI],
        "id": collection_id,
        **({"title": title} if title else {}),
        "description": description
        or f"{len(entries)} machine-learning model(s) described with the STAC MLM extension.",
        "license": license_,
        "extent": _extent(entries),
        "summaries": _summaries(documents),
        "links": [{"rel": "root", "href": f"./{COLLECTION_FILE}", "type": "application/json"}],
    }
    if title:
        collection["links"][0]["title"] = title
    for entry in entries:
        item_id = entry.document["id"]
        link = {"rel": "item", "href": f"./{item_id}/{item_id}.json", "type": "application/geo+json"}
        if _item_title(entry.document):
            link["title"] = _item_title(entry.document)
        collection["links"].append(link)
    return collection


def _raise_invalid(report: ValidationReport, what: str) -> None:
    if report.valid:
        return
    more = f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""
    raise ItemValidationError(
        f"{what} is invalid: {report.problems[0]}{more}. Nothing was written.",
        problems=list(report.problems),
        hint="Fix the item (see mlm-export validate), or pass validate=False to build the catalog anyway.",
    )


def _prepare_directory(directory: Path, targets: list[Path], overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"Catalog directory '{directory}' is a file.", hint="Choose a directory path.")
    if not overwrite:
        for target in targets:
            if target.exists():
                raise OutputExistsError(
                    f"'{target}' already exists; the catalog was not written.",
                    hint="Pass overwrite=True (--overwrite) to replace it, or choose another directory.",
                )
    for target in targets:
        if target.is_dir() or (target.parent != directory and target.parent.exists() and not target.parent.is_dir()):
            raise OutputError(f"Cannot write '{target}': a directory or file is in the way.", hint="Remove it.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the catalog directory '{directory}': {exc.strerror}.", hint="Choose a writable path."
        ) from exc


def build_catalog(
    items: Iterable[ItemSource],
    directory: str | os.PathLike[str],
    *,
    collection_id: str = "mlm-models",
    title: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
) -> pystac.Collection:
    """Write a self-contained STAC Collection of model Items to ``directory``.

    Writes ``directory/collection.json`` and ``directory/<item id>/<item id>.json`` for each item, all hrefs
    relative. Local asset hrefs are rewritten relative to each item's new file; URLs are kept. Files are first
    written to a temporary directory inside ``directory`` and then moved into place one by one with
    ``os.replace``, ``collection.json`` last, so that no reader sees a collection linking a missing item. Items
    of an earlier catalog in ``directory`` that are not in ``items`` stay on disk, unlinked.

    Args:
        items: model Items as ``pystac.Item`` objects, dicts or paths of Item JSON files. Relative hrefs in a dict
            cannot be resolved; give a path instead.
        directory: the catalog directory (created if missing).
        collection_id: the Collection id (also written as each item's ``collection``).
        title: the Collection title.
        description: the Collection description; defaults to a sentence with the number of models.
        overwrite: replace an existing ``collection.json`` and item files.
        validate: validate every item and the Collection before writing anything (local asset files included).
        schema_dir: offline schema directory (see :func:`mlm_export.validate_item`).

    Returns:
        The Collection read back from the written ``collection.json``; ``get_self_href()`` is its path and its
        items load from the written files.

    Raises:
        ConfigurationError: no items, an input that is not a model Item, duplicate item ids, an id that cannot be
            a directory name, or a relative href that cannot be resolved.
        ItemValidationError: an item or the Collection does not validate (nothing is written).
        OutputExistsError: ``collection.json`` or an item file exists and ``overwrite`` is False.
        OutputError: the directory cannot be created or written.

    .. versionadded:: 0.1
    """
    if not isinstance(collection_id, str) or _BAD_ID.search(collection_id):
        raise ConfigurationError(f"collection_id {collection_id!r} must be a non-empty name without '/' or '\\'.")
    if isinstance(items, (str, os.PathLike, Mapping, pystac.Item)):
        items = [items]
    entries = [_entry(item) for item in items]
    if not entries:
        raise ConfigurationError("items: no items were given; a catalog needs at least one model Item.")
    seen: dict[str, str] = {}
    for entry in entries:
        item_id = entry.document["id"]
        if _BAD_ID.search(item_id) or item_id in (".", ".."):
            raise ConfigurationError(
                f"{entry.source}: item id {item_id!r} cannot be used as a directory name.",
                hint="Use an id without '/', '\\' or a leading '.'.",
            )
        if item_id in seen:
            raise ConfigurationError(
                f"items: {seen[item_id]} and {entry.source} have the same id {item_id!r}; ids must be unique.",
                hint="Give one of them another id.",
            )
        seen[item_id] = entry.source

    directory = Path(directory)
    root = directory.resolve()
    documents = [_catalog_item(e, collection_id, title) for e in entries]
    collection = _collection_document(entries, collection_id, title, description)
    if validate:
        from mlm_export.stac.validate import validate_item

        for entry, document in zip(entries, documents, strict=True):
            _raise_invalid(validate_item(document, schema_dir, check_files=True), f"{entry.source}")
        _raise_invalid(validate_item(collection, schema_dir), f"The collection {collection_id!r}")

    targets = {document["id"]: root / document["id"] / f"{document['id']}.json" for document in documents}
    finals = {document["id"]: item_to_json_dict(document, targets[document["id"]]) for document in documents}
    collection_path = root / COLLECTION_FILE
    _prepare_directory(root, [collection_path, *targets.values()], overwrite)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".mlm-catalog-", dir=root))
    except OSError as exc:
        raise OutputError(f"Cannot write in '{directory}': {exc.strerror}.", hint="Choose a writable path.") from exc
    try:
        for item_id, document in finals.items():
            (staging / item_id).mkdir()
            write_json_atomic(document, staging / item_id / f"{item_id}.json")
        write_json_atomic(collection, staging / COLLECTION_FILE)
        for item_id, target in targets.items():
            target.parent.mkdir(exist_ok=True)
            os.replace(staging / item_id / f"{item_id}.json", target)
        os.replace(staging / COLLECTION_FILE, collection_path)
    except OSError as exc:
        raise OutputError(f"Cannot write the catalog in '{directory}': {exc}.", hint="Check the permissions.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return pystac.Collection.from_file(str(collection_path))


# ------------------------------------------------------------------------------------------------------- search
@dataclass(frozen=True)
class SearchHit:
    """One model that matches a :func:`search_catalog` query.

    Attributes:
        id: the Item id.
        href: the Item file (joined to the directory that was searched), or its self href.
        name: ``mlm:name``.
        score: the specificity, in (0, 1]: the product of ``factors`` (see the module docstring).
        factors: (criterion, factor) for each criterion of the query that scores.
        reasons: one sentence per criterion saying why the model matched.
        tasks: ``mlm:tasks``.
        framework: ``mlm:framework``.

    .. versionadded:: 0.1
    """

    id: str
    href: str | None
    name: str | None
    score: float
    factors: tuple[tuple[str, float], ...] = ()
    reasons: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    framework: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output)."""
        return {
            "id": self.id,
            "href": self.href,
            "name": self.name,
            "score": self.score,
            "factors": dict(self.factors),
            "reasons": list(self.reasons),
            "tasks": list(self.tasks),
            "framework": self.framework,
        }


@dataclass(frozen=True)
class _Query:
    bbox: BaseGeometry | None
    bbox_text: str
    interval: tuple[dt.datetime | None, dt.datetime | None] | None
    interval_text: str
    task: str | None
    bands: dict[str, str] | None  # normalized -> as given
    framework: str | None
    input_channels: int | None


def _band_key(name: str) -> str:
    """Comparison key of a band name: case-insensitive, ``B04`` = ``B4``."""
    return re.sub(r"(?<=[A-Z])0+(?=\d)", "", name.strip().upper())


def _framework_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def _query_bbox(bbox: Sequence[Any]) -> tuple[BaseGeometry, str]:
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bbox: expected 4 numbers (west, south, east, north), got {bbox!r}.") from exc
    if len(values) not in (4, 6) or not all(math.isfinite(v) for v in values):
        raise ConfigurationError(f"bbox: expected 4 finite numbers (west, south, east, north), got {bbox!r}.")
    west, south, east, north = _bbox_2d(values)
    if not (-90.0 <= south <= north <= 90.0):
        raise ConfigurationError(
            f"bbox: south {south} and north {north} must satisfy -90 <= south <= north <= 90.",
            hint="Give the box as WEST SOUTH EAST NORTH in degrees (EPSG:4326).",
        )
    if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
        raise ConfigurationError(f"bbox: west {west} and east {east} must lie in -180..180 (west > east crosses 180°).")
    # Same rule as export_item: west > east crosses the antimeridian only for a box narrower than a hemisphere.
    if west > east and not (west > 0 > east and 360 - (west - east) < 180):
        raise ConfigurationError(
            f"bbox: west {west} is east of east {east} and the box does not cross the antimeridian.",
            hint="Give the box as WEST SOUTH EAST NORTH; across the antimeridian west > 0 > east.",
        )
    text = f"[{west:g}, {south:g}, {east:g}, {north:g}]"
    if west <= east and (west == east or south == north):
        if (west, south) == (east, north):
            return Point(west, south), text
        return LineString([(west, south), (east, north)]), text
    return _footprint_of((west, south, east, north)), text


def _parse_query(
    bbox: Sequence[float] | None,
    datetime: Any,
    task: str | None,
    bands: Sequence[str] | str | None,
    framework: str | None,
    input_channels: int | None,
) -> _Query:
    geometry, bbox_text = _query_bbox(bbox) if bbox is not None else (None, "")
    interval = _query_interval(datetime) if datetime is not None else None
    interval_text = _interval_text(datetime)
    if task is not None and task not in TASKS:
        raise ConfigurationError(f"task: {task!r} is not an MLM task; use one of {', '.join(TASKS)}.")
    band_map = None
    if bands is not None:
        names = re.split(r"[,\s]+", bands) if isinstance(bands, str) else list(bands)
        names = [n for n in names if isinstance(n, str) and n.strip()]
        if not names or (not isinstance(bands, str) and len(names) != len(list(bands))):
            raise ConfigurationError(f"bands: expected a list of band names, got {bands!r}.")
        band_map = {_band_key(n): n.strip() for n in names}
    if framework is not None and (not isinstance(framework, str) or not _framework_key(framework)):
        raise ConfigurationError(f"framework: expected a framework name such as 'PyTorch', got {framework!r}.")
    if input_channels is not None and (
        isinstance(input_channels, bool) or not isinstance(input_channels, int) or input_channels < 1
    ):
        raise ConfigurationError(f"input_channels: expected a positive integer, got {input_channels!r}.")
    return _Query(geometry, bbox_text, interval, interval_text, task, band_map, framework, input_channels)


def _band_definitions(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    props = document.get("properties") or {}
    sources = [props.get("bands"), props.get("eo:bands")]
    for asset in (document.get("assets") or {}).values():
        if isinstance(asset, Mapping):
            sources += [asset.get("bands"), asset.get("eo:bands"), asset.get("raster:bands")]
    return [b for source in sources if isinstance(source, list) for b in source if isinstance(b, Mapping)]


def _definition_aliases(document: Mapping[str, Any]) -> dict[str, set[str]]:
    """Band keys a model band answers to: its name, the first word of it ('B04 - red'), its common name."""
    aliases: dict[str, set[str]] = {}
    for band in _band_definitions(document):
        names = [band.get(k) for k in ("name", "common_name", "eo:common_name")]
        keys = {_band_key(n) for n in names if isinstance(n, str) and n.strip()}
        keys |= {_band_key(n.split()[0]) for n in names if isinstance(n, str) and n.strip()}
        for key in keys:
            aliases.setdefault(key, set()).update(keys)
    return aliases


def _input_band_names(document: Mapping[str, Any]) -> list[str]:
    """Names of every band listed in the model's inputs, computed (expression) bands included."""
    names: list[str] = []
    for entry in (document.get("properties") or {}).get("mlm:input") or []:
        for band in (entry.get("bands") if isinstance(entry, Mapping) else None) or []:
            name = band if isinstance(band, str) else band.get("name") if isinstance(band, Mapping) else None
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


def _required_bands(document: Mapping[str, Any]) -> list[str]:
    """Bands the model reads: listed input bands, with a computed band replaced by the bands its expression uses."""
    aliases = _definition_aliases(document)
    listed = {_band_key(n) for n in _input_band_names(document)}
    known = set(aliases) | listed
    required: list[str] = []
    for entry in (document.get("properties") or {}).get("mlm:input") or []:
        for band in (entry.get("bands") if isinstance(entry, Mapping) else None) or []:
            if isinstance(band, Mapping) and "expression" in band:
                expression = band.get("expression")
                text = expression if isinstance(expression, str) else json.dumps(expression)
                names = [n for n in _IDENTIFIER.findall(text) if _band_key(n) in known]
            else:
                name = band if isinstance(band, str) else band.get("name") if isinstance(band, Mapping) else None
                names = [name] if isinstance(name, str) and name else []
            required += [n for n in names if n not in required]
    return required


def _match_bands(document: Mapping[str, Any], query: _Query) -> tuple[float, str] | None:
    assert query.bands is not None
    required = _required_bands(document)
    if not required:
        return None  # a model without band names cannot be shown to fit the bands
    aliases = _definition_aliases(document)
    used: dict[str, str] = {}
    for name in required:
        keys = aliases.get(_band_key(name), set()) | {_band_key(name)}
        hit = next((k for k in query.bands if k in keys), None)
        if hit is None:
            return None
        used[hit] = query.bands[hit]
    unused = [given for key, given in query.bands.items() if key not in used]
    reason = f"bands: reads {', '.join(used.values())} ({len(used)} of the {len(query.bands)} given)"
    if unused:
        reason += f"; does not use {', '.join(unused)}"
    return len(used) / len(query.bands), reason


def _match_bbox(document: Mapping[str, Any], source: str, query: _Query) -> tuple[float, str] | None:
    assert query.bbox is not None
    bbox, _ = _item_bbox(document, source)
    if bbox is None:
        return None
    footprint = _footprint_of(bbox)
    if not footprint.intersects(query.bbox):
        return None
    if query.bbox.area > 0 and footprint.area > 0 and footprint.intersection(query.bbox).area == 0:
        return None  # the boxes only touch along an edge
    overlap = footprint.intersection(query.bbox).area + AREA_EPSILON
    covered = overlap / (query.bbox.area + AREA_EPSILON)
    share = overlap / (footprint.area + AREA_EPSILON)
    shown = ", ".join(f"{v:.6g}" for v in bbox)
    reason = f"bbox: the model's footprint [{shown}] covers {min(covered, 1.0):.0%} of {query.bbox_text}"
    reason += f"; the overlap is {min(share, 1.0):.2%} of the footprint"
    return min(covered * share, 1.0), reason


def _match_datetime(document: Mapping[str, Any], source: str, query: _Query) -> tuple[float, str] | None:
    assert query.interval is not None
    item_start, item_end = _item_interval(document, source)
    start, end = item_start or _EARLIEST, item_end or _LATEST
    query_start, query_end = query.interval
    low, high = max(start, query_start or _EARLIEST), min(end, query_end or _LATEST)
    if low > high:
        return None
    overlap = _days(low, high) + DURATION_EPSILON_DAYS
    factor = overlap / (_days(start, end) + DURATION_EPSILON_DAYS)
    if query_start is not None and query_end is not None:
        factor *= overlap / (_days(query_start, query_end) + DURATION_EPSILON_DAYS)

    def show(value: dt.datetime | None) -> str:
        return datetime_to_str(value) if value is not None else ".."

    span = show(item_start) if item_start == item_end else f"{show(item_start)}/{show(item_end)}"
    return min(factor, 1.0), f"datetime: the model's time range {span} overlaps {query.interval_text}"


def _match_task(document: Mapping[str, Any], query: _Query) -> tuple[float, str] | None:
    assert query.task is not None
    tasks = [t for t in (document.get("properties") or {}).get("mlm:tasks") or [] if isinstance(t, str)]
    answering = [t for t in tasks if t == query.task or t in TASK_FAMILIES.get(query.task, ())]
    if not answering:
        return None
    reason = f"task: {', '.join(answering)}" + (f" answers {query.task!r}" if answering != [query.task] else "")
    if len(tasks) > len(answering):
        reason += f" ({len(answering)} of the model's tasks: {', '.join(tasks)})"
    return len(answering) / len(tasks), reason


def _frameworks(document: Mapping[str, Any]) -> list[str]:
    values = [(document.get("properties") or {}).get("mlm:framework")]
    values += [a.get("mlm:framework") for a in (document.get("assets") or {}).values() if isinstance(a, Mapping)]
    return [v for v in values if isinstance(v, str)]


def _match_framework(document: Mapping[str, Any], query: _Query) -> str | None:
    assert query.framework is not None
    wanted = _framework_key(query.framework)
    found = next((f for f in _frameworks(document) if _framework_key(f) == wanted), None)
    return None if found is None else f"framework: {found}"


def _match_channels(document: Mapping[str, Any], query: _Query) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for entry in (document.get("properties") or {}).get("mlm:input") or []:
        tensor = entry.get("input") if isinstance(entry, Mapping) else None
        if not isinstance(tensor, Mapping):
            continue
        shape, order = tensor.get("shape") or [], tensor.get("dim_order") or []
        for dim, size in zip(order, shape, strict=False):
            if dim not in _CHANNEL_DIMS:
                continue
            if size == query.input_channels:
                return 1.0, f"input_channels: input {entry.get('name')!r} has {size} {dim}"
            if size == -1 and best is None:
                best = DYNAMIC_CHANNELS_FACTOR, f"input_channels: input {entry.get('name')!r} takes any number of {dim}"
    return best


def _match(entry: _Entry, query: _Query) -> SearchHit | None:
    document = entry.document
    factors: list[tuple[str, float]] = []
    reasons: list[str] = []
    checks = (
        ("bbox", query.bbox is not None, lambda: _match_bbox(document, entry.source, query)),
        ("datetime", query.interval is not None, lambda: _match_datetime(document, entry.source, query)),
        ("task", query.task is not None, lambda: _match_task(document, query)),
        ("bands", query.bands is not None, lambda: _match_bands(document, query)),
        ("input_channels", query.input_channels is not None, lambda: _match_channels(document, query)),
    )
    for name, asked, check in checks:
        if not asked:
            continue
        result = check()
        if result is None:
            return None
        factors.append((name, result[0]))
        reasons.append(result[1])
    if query.framework is not None:
        reason = _match_framework(document, query)
        if reason is None:
            return None
        reasons.append(reason)
    props = document.get("properties") or {}
    name = props.get("mlm:name")
    framework = props.get("mlm:framework")
    return SearchHit(
        id=str(document.get("id")),
        href=entry.href,
        name=name if isinstance(name, str) else None,
        score=math.prod(f for _, f in factors),
        factors=tuple(factors),
        reasons=tuple(reasons) or ("no criteria: every model matches",),
        tasks=tuple(t for t in props.get("mlm:tasks") or [] if isinstance(t, str)),
        framework=framework if isinstance(framework, str) else None,
    )


def _catalog_entries(path: Path, seen: set[Path]) -> Iterator[_Entry]:
    """Items linked from the Catalog/Collection file ``path``, following ``child`` links."""
    resolved = path.resolve()
    if resolved in seen:
        return
    seen.add(resolved)
    document = read_json_object(path, "Catalog file", ConfigurationError)
    if document.get("type") not in ("Collection", "Catalog"):
        raise ConfigurationError(
            f"'{path}' is not a STAC Collection or Catalog (type {document.get('type')!r}).",
            hint="Pass a catalog directory written by build_catalog (mlm-export catalog).",
        )
    for link in document.get("links") or []:
        if not isinstance(link, Mapping) or link.get("rel") not in ("item", "child"):
            continue
        href = str(link.get("href", ""))
        if _is_url(href):
            raise ConfigurationError(
                f"'{path}' links {href!r}; only local catalogs can be searched.", hint="Download the catalog first."
            )
        if urlparse(href).scheme == "file":
            href = urlparse(href).path
        target = Path(href) if os.path.isabs(href) else Path(os.path.normpath(path.parent / href))
        if link["rel"] == "child":
            yield from _catalog_entries(target, seen)
            continue
        if not target.is_file():
            raise ConfigurationError(
                f"'{path}' links the item {href!r} but '{target}' does not exist.",
                hint="Rebuild the catalog (mlm-export catalog ... --overwrite).",
            )
        document_ = read_json_object(target, "Item file", ConfigurationError)
        if document_.get("type") != "Feature":
            raise ConfigurationError(f"'{target}', linked as an item from '{path}', is not a STAC Item.")
        yield _Entry(document_, f"'{target}'", target.resolve().parent, str(target))


def _entries_of(directory_or_collection: Any) -> list[_Entry]:
    if isinstance(directory_or_collection, pystac.Catalog):
        entries = []
        for item in directory_or_collection.get_items(recursive=True):
            self_href = item.get_self_href()
            document = item.to_dict(include_self_link=False, transform_hrefs=False)
            entries.append(_Entry(document, f"item {item.id!r}", None, self_href))
        return entries
    if not isinstance(directory_or_collection, (str, os.PathLike)):
        raise ConfigurationError(
            f"directory_or_collection: expected a catalog directory or a pystac.Collection, "
            f"got {type(directory_or_collection).__name__}."
        )
    path = Path(directory_or_collection)
    if path.is_dir():
        if not (path / COLLECTION_FILE).is_file():
            raise ConfigurationError(
                f"'{path}' is not a catalog directory: it has no {COLLECTION_FILE}.",
                hint="Build one with build_catalog (mlm-export catalog ITEM... -o DIR), or pass the Collection's file.",
            )
        path = path / COLLECTION_FILE
    elif not path.exists():
        raise ConfigurationError(f"Catalog '{path}' does not exist.", hint="Pass the directory of a built catalog.")
    return list(_catalog_entries(path, set()))


def search_catalog(
    directory_or_collection: str | os.PathLike[str] | pystac.Catalog,
    *,
    bbox: Sequence[float] | None = None,
    datetime: str | dt.datetime | tuple[Any, Any] | None = None,
    task: str | None = None,
    bands: Sequence[str] | str | None = None,
    framework: str | None = None,
    input_channels: int | None = None,
) -> list[SearchHit]:
    """Find the models of a catalog that fit the query, most specific first.

    Every given criterion must hold; the hits are ranked by the specificity score of the module docstring.
    "A model for my Sentinel-2 tile": ``search_catalog(dir, bbox=[w, s, e, n], bands=["B02", "B03", "B04", "B08"])``.

    Args:
        directory_or_collection: a catalog directory (with ``collection.json``), the path of a Collection or
            Catalog JSON file, or a ``pystac.Collection``/``pystac.Catalog``.
        bbox: ``[west, south, east, north]`` in degrees; the model's bbox must intersect it.
        datetime: an instant (``2020-06-01T00:00:00Z``; a date, month or year stands for the whole period), or an
            interval ``"start/end"`` with ``..`` for an open end; the model's time range must overlap it.
        task: an MLM task; a generic task also matches its specific forms (``segmentation`` matches
            ``semantic-segmentation``).
        bands: the band names you have; the model must read at least one band and only bands among them
            (case-insensitive, ``B4`` = ``B04``, common names such as ``red`` via the item's band definitions;
            computed bands count as the bands their expression reads).
        framework: ``mlm:framework`` of the item or an asset, ignoring case, spaces and punctuation.
        input_channels: the size of the ``bands``/``channel`` dimension of one of the model's inputs.

    Returns:
        The matching models, highest score first, then by id.

    Raises:
        ConfigurationError: an invalid argument (named in the message), a directory without ``collection.json``,
            or a catalog file that is not STAC.

    .. versionadded:: 0.1
    """
    query = _parse_query(bbox, datetime, task, bands, framework, input_channels)
    hits = [hit for entry in _entries_of(directory_or_collection) if (hit := _match(entry, query)) is not None]
    return sorted(hits, key=lambda h: (-h.score, h.id, h.href or ""))


def format_hits(hits: Sequence[SearchHit]) -> str:
    """A plain-text table of ``hits`` (rank, score, id, name, tasks, framework, path), each followed by its reasons.

    .. versionadded:: 0.1
    """
    if not hits:
        return "No model matches."
    header = ("#", "score", "id", "name", "tasks", "framework", "path")
    rows = [
        (str(rank), f"{hit.score:.3g}", hit.id, hit.name or "-", ",".join(hit.tasks) or "-", hit.framework or "-",
         hit.href or "-")
        for rank, hit in enumerate(hits, 1)
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    lines = [line(header), line(["-" * w for w in widths])]
    indent = " " * (widths[0] + 2)
    for row, hit in zip(rows, hits, strict=True):
        lines.append(line(row))
        lines += [f"{indent}{reason}" for reason in hit.reasons]
    return "\n".join(lines)
