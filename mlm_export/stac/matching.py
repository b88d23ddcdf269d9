"""Whether a model Item fits a query, and how specifically: the matching rules shared by every search backend.

The embedded backend (local files) and the STAC API backend (:mod:`mlm_export.stac.search_api`) run the same
:func:`match` on each Item JSON, so both give the same hits in the same order.

**Specificity score** of a :class:`SearchHit`: the product of one factor in (0, 1] per criterion of the query,
1 meaning an exact fit (``framework`` and ``filter`` only filter):

- ``bbox``: ``(I / Q) * (I / F)`` with I the area of the intersection of the query box Q and the model footprint F
  (its bbox), in degrees², each plus ``AREA_EPSILON`` so a point query works: the share of the query the model
  covers times the share of the model's area the query is. A model containing the query scores Q / F, so the
  smallest containing footprint ranks first; a box equal to the query scores 1.
- ``datetime``: the same with durations in days, each plus one day (an instant counts as one day); the first
  factor is left out when the query is open-ended. Open ends of a model's range count as year 1 / 9999.
- ``bands``: the share of the given bands the model reads (it must read nothing else); 1 when the sets are equal.
- ``tasks``: the share of the model's tasks that answer one of the asked tasks (a single-task model is the most
  specific); every asked task must be answered.
- ``input_channels``: 1 for an input with exactly that many channels, 0.5 for a dynamic (-1) channel dimension.

Hits are sorted by score (highest first), then by item id, and ``limit`` applies after ranking. A model without a
bbox never matches a ``bbox`` query, and one whose inputs name no bands never matches a ``bands`` query (use
``input_channels`` for those).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cql2
from pystac.utils import datetime_to_str
from shapely.geometry.base import BaseGeometry

from mlm_export.description import TASKS
from mlm_export.errors import ConfigurationError
from mlm_export.stac.bands import band_key, definition_aliases, required_bands
from mlm_export.stac.entries import Entry
from mlm_export.stac.filter_bounds import check_filter
from mlm_export.stac.spacetime import (
    EARLIEST,
    LATEST,
    days,
    footprint_of,
    interval_text,
    item_bbox,
    item_interval,
    query_bbox,
    query_interval,
)

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
_CHANNEL_DIMS = ("bands", "channel", "channels")


@dataclass(frozen=True)
class SearchHit:
    """One model that matches a :func:`~mlm_export.stac.search.search` query.

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
class Query:
    """A parsed search query (see :func:`parse_query`); ``None`` means "not asked"."""

    bbox: BaseGeometry | None
    bbox_text: str
    interval: tuple[dt.datetime | None, dt.datetime | None] | None
    interval_text: str
    tasks: tuple[str, ...] | None
    bands: dict[str, str] | None  # normalized -> as given
    framework: str | None
    input_channels: int | None
    filter: cql2.Expr | None = None
    filter_text: str = ""


def framework_key(name: str) -> str:
    """Comparison key of a framework name: lower case, without spaces or punctuation (``"Py-Torch"`` = pytorch)."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def _parse_tasks(tasks: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if tasks is None:
        return None
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    if not names:
        raise ConfigurationError("tasks: expected at least one MLM task, got an empty list.")
    for task in names:
        if task not in TASKS:
            raise ConfigurationError(f"tasks: {task!r} is not an MLM task; use one of {', '.join(TASKS)}.")
    return tuple(dict.fromkeys(names))


def parse_filter(text: str | Mapping[str, Any] | None) -> cql2.Expr | None:
    """A CQL2 filter (text, or JSON as a string or dict) parsed with ``cql2``; the error points at the position.

    Raises:
        ConfigurationError: the filter exceeds a bound of :mod:`mlm_export.stac.filter_bounds` (checked first, so
            ``cql2`` never sees it), or does not parse (cql2's message, with line:column and a caret).
    """
    if text is None:
        return None
    checked = check_filter(text)
    try:
        expression = cql2.Expr(dict(checked) if isinstance(checked, Mapping) else checked)
        expression.validate()
    except (cql2.ParseError, cql2.ValidationError, ValueError, Exception) as exc:  # noqa: BLE001 - cql2 raises bare Exception
        raise ConfigurationError(
            f"filter: {text!r} is not valid CQL2: {exc}",
            hint='Write CQL2 text ("mlm:framework" = \'PyTorch\') or cql2-json; quote property names with ".',
        ) from None
    return expression


def parse_query(
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    tasks: Sequence[str] | str | None = None,
    bands: Sequence[str] | str | None = None,
    framework: str | None = None,
    input_channels: int | None = None,
    filter: str | Mapping[str, Any] | None = None,  # the STAC API name
) -> Query:
    """Check and normalise the search arguments (see :func:`mlm_export.stac.search.search`).

    Raises:
        ConfigurationError: an invalid argument, named in the message.
    """
    geometry, bbox_text = query_bbox(bbox) if bbox is not None else (None, "")
    interval = query_interval(datetime) if datetime is not None else None
    band_map = None
    if bands is not None:
        names = re.split(r"[,\s]+", bands) if isinstance(bands, str) else list(bands)
        names = [n for n in names if isinstance(n, str) and n.strip()]
        if not names or (not isinstance(bands, str) and len(names) != len(list(bands))):
            raise ConfigurationError(f"bands: expected a list of band names, got {bands!r}.")
        band_map = {band_key(n): n.strip() for n in names}
    if framework is not None and (not isinstance(framework, str) or not framework_key(framework)):
        raise ConfigurationError(f"framework: expected a framework name such as 'PyTorch', got {framework!r}.")
    if input_channels is not None and (
        isinstance(input_channels, bool) or not isinstance(input_channels, int) or input_channels < 1
    ):
        raise ConfigurationError(f"input_channels: expected a positive integer, got {input_channels!r}.")
    expression = parse_filter(filter)  # bounded before anything walks it (json.dumps included)
    filter_text = filter if isinstance(filter, str) else json.dumps(filter) if filter is not None else ""
    return Query(geometry, bbox_text, interval, interval_text(datetime), _parse_tasks(tasks), band_map, framework,
                 input_channels, expression, filter_text)  # fmt: skip


def _match_bands(document: Mapping[str, Any], query: Query) -> tuple[float, str] | None:
    assert query.bands is not None
    aliases = definition_aliases(document)
    required = required_bands(document, aliases)
    if not required:
        return None  # a model without band names cannot be shown to fit the bands
    used: dict[str, str] = {}
    for name in required:
        keys = aliases.get(band_key(name), set()) | {band_key(name)}
        hit = next((k for k in query.bands if k in keys), None)
        if hit is None:
            return None
        used[hit] = query.bands[hit]
    unused = [given for key, given in query.bands.items() if key not in used]
    reason = f"bands: reads {', '.join(used.values())} ({len(used)} of the {len(query.bands)} given)"
    if unused:
        reason += f"; does not use {', '.join(unused)}"
    return len(used) / len(query.bands), reason


def _match_bbox(document: Mapping[str, Any], source: str, query: Query) -> tuple[float, str] | None:
    assert query.bbox is not None
    bbox, _ = item_bbox(document, source)
    if bbox is None:
        return None
    footprint = footprint_of(bbox)
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


def _match_datetime(document: Mapping[str, Any], source: str, query: Query) -> tuple[float, str] | None:
    assert query.interval is not None
    item_start, item_end = item_interval(document, source)
    start, end = item_start or EARLIEST, item_end or LATEST
    query_start, query_end = query.interval
    low, high = max(start, query_start or EARLIEST), min(end, query_end or LATEST)
    if low > high:
        return None
    overlap = days(low, high) + DURATION_EPSILON_DAYS
    factor = overlap / (days(start, end) + DURATION_EPSILON_DAYS)
    if query_start is not None and query_end is not None:
        factor *= overlap / (days(query_start, query_end) + DURATION_EPSILON_DAYS)

    def show(value: dt.datetime | None) -> str:
        return datetime_to_str(value) if value is not None else ".."

    span = show(item_start) if item_start == item_end else f"{show(item_start)}/{show(item_end)}"
    return min(factor, 1.0), f"datetime: the model's time range {span} overlaps {query.interval_text}"


def _match_tasks(document: Mapping[str, Any], query: Query) -> tuple[float, str] | None:
    assert query.tasks is not None
    tasks = [t for t in (document.get("properties") or {}).get("mlm:tasks") or [] if isinstance(t, str)]
    answers = {asked: [t for t in tasks if t == asked or t in TASK_FAMILIES.get(asked, ())] for asked in query.tasks}
    if not all(answers.values()):
        return None
    answering = [t for t in tasks if any(t in found for found in answers.values())]
    asked = ", ".join(repr(t) for t in query.tasks)
    reason = f"task: {', '.join(answering)}" + (f" answers {asked}" if answering != list(query.tasks) else "")
    if len(tasks) > len(answering):
        reason += f" ({len(answering)} of the model's tasks: {', '.join(tasks)})"
    return len(answering) / len(tasks), reason


def matches_filter(expression: cql2.Expr, document: Mapping[str, Any]) -> bool:
    """Whether the Item JSON ``document`` satisfies the CQL2 ``expression``; a missing property is no match."""
    try:
        return bool(expression.matches(dict(document)))
    except Exception as exc:  # noqa: BLE001 - cql2 raises bare Exception
        if "reduce expression to boolean" in str(exc):
            return False  # a property the Item lacks
        raise ConfigurationError(f"filter: cannot evaluate it on item {document.get('id')!r}: {exc}") from None


def _frameworks(document: Mapping[str, Any]) -> list[str]:
    values = [(document.get("properties") or {}).get("mlm:framework")]
    values += [a.get("mlm:framework") for a in (document.get("assets") or {}).values() if isinstance(a, Mapping)]
    return [v for v in values if isinstance(v, str)]


def _match_framework(document: Mapping[str, Any], query: Query) -> str | None:
    assert query.framework is not None
    wanted = framework_key(query.framework)
    found = next((f for f in _frameworks(document) if framework_key(f) == wanted), None)
    return None if found is None else f"framework: {found}"


def channel_dims(document: Mapping[str, Any]) -> Iterator[tuple[Any, str, Any]]:
    """``(input name, dim name, size)`` of every channel dimension of every input, as the Item gives them."""
    for entry in (document.get("properties") or {}).get("mlm:input") or []:
        tensor = entry.get("input") if isinstance(entry, Mapping) else None
        if not isinstance(tensor, Mapping):
            continue
        shape, order = tensor.get("shape") or [], tensor.get("dim_order") or []
        for dim, size in zip(order, shape, strict=False):
            if dim in _CHANNEL_DIMS:
                yield entry.get("name"), dim, size


def _match_channels(document: Mapping[str, Any], query: Query) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for name, dim, size in channel_dims(document):
        if size == query.input_channels:
            return 1.0, f"input_channels: input {name!r} has {size} {dim}"
        if size == -1 and best is None:
            best = DYNAMIC_CHANNELS_FACTOR, f"input_channels: input {name!r} takes any number of {dim}"
    return best


def match(entry: Entry, query: Query) -> SearchHit | None:
    """The hit for ``entry`` when its Item fits every criterion of ``query``, else ``None``."""
    document = entry.document
    if query.filter is not None and not matches_filter(query.filter, document):
        return None
    factors: list[tuple[str, float]] = []
    reasons: list[str] = []
    checks = (
        ("bbox", query.bbox is not None, lambda: _match_bbox(document, entry.source, query)),
        ("datetime", query.interval is not None, lambda: _match_datetime(document, entry.source, query)),
        ("tasks", query.tasks is not None, lambda: _match_tasks(document, query)),
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
    if query.filter is not None:
        reasons.append(f"filter: {query.filter_text}")
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
