"""Space and time of model Items and of queries: bboxes (antimeridian, 0..360 repairs) and datetime intervals.

Shared by the Collection extent (:mod:`mlm_export.stac.collection`) and the search (:mod:`mlm_export.stac.search`).
Open ends of a model's time range count as year 1 / 9999 (``EARLIEST`` / ``LATEST``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pystac.utils import str_to_datetime
from shapely.geometry import LineString, Point, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from mlm_export.errors import ConfigurationError
from mlm_export.extent import check_bbox, corners

EARLIEST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
_PERIOD = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def bbox_2d(values: Sequence[Any]) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a 2D or 3D bbox."""
    if len(values) == 6:
        return float(values[0]), float(values[1]), float(values[3]), float(values[4])
    return float(values[0]), float(values[1]), float(values[2]), float(values[3])


def footprint_of(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    """The box as a shapely geometry; two boxes when it crosses the antimeridian (west > east)."""
    west, south, east, north = bbox
    if west <= east:
        return box(west, south, east, north)
    return unary_union([box(west, south, 180.0, north), box(-180.0, south, east, north)])  # crosses 180°


def item_bbox(document: Mapping[str, Any], source: str) -> tuple[tuple[float, float, float, float] | None, str]:
    """The item's bbox as (west, south, east, north) in -180..180, and a note when it had to be repaired."""
    raw = document.get("bbox")
    if raw is None:
        return None, ""
    try:
        west, south, east, north = bbox_2d(raw)
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


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive datetime is taken as UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _period_end(text: str, start: dt.datetime) -> dt.datetime:
    """Last instant of the year, month or day written as ``text`` (``2020``, ``2020-06``, ``2020-06-01``)."""
    if len(text) == 4:
        following = start.replace(year=start.year + 1) if start.year < 9999 else LATEST
    elif len(text) == 7:
        following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    else:
        following = start + dt.timedelta(days=1)
    return min(following - dt.timedelta(microseconds=1), LATEST)


def _instant(value: Any, argument: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Start and end of one query bound: an instant, or a whole year/month/day written as a date."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "..")):
        return None, None
    if isinstance(value, dt.datetime):
        return utc(value), utc(value)
    if isinstance(value, dt.date):
        start = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return start, start + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    if not isinstance(value, str):
        raise ConfigurationError(f"{argument}: expected an ISO 8601 string or a datetime, got {type(value).__name__}.")
    text = value.strip()
    try:
        start = utc(str_to_datetime(text))
    except (ValueError, OverflowError) as exc:
        raise ConfigurationError(
            f"{argument}: {value!r} is not an ISO 8601 date-time.",
            hint="Use e.g. 2020-06-01T00:00:00Z, 2020-06-01, or an interval 2020-01-01/2021-01-01 ('..' = open).",
        ) from exc
    return (start, _period_end(text, start)) if _PERIOD.match(text) else (start, start)


def query_interval(value: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of a datetime query (instant, period, ``START/END`` or a pair); ``None`` for an open end."""
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


def interval_text(value: Any) -> str:
    """The datetime query as the user wrote it, for the reasons of a hit."""
    if isinstance(value, (tuple, list)):
        return "/".join(".." if v is None else v.isoformat() if isinstance(v, dt.date) else str(v) for v in value)
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def item_interval(document: Mapping[str, Any], source: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of an item; None for an open end. A plain ``datetime`` is an instant."""
    props = document.get("properties") or {}

    def parse(key: str) -> dt.datetime | None:
        value = props.get(key)
        if value is None:
            return None
        try:
            return utc(str_to_datetime(value))
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigurationError(f"{source}: properties.{key} {value!r} is not an ISO 8601 date-time.") from exc

    start, end = parse("start_datetime"), parse("end_datetime")
    if start is None and end is None:
        instant = parse("datetime")
        return instant, instant
    return start, end


def days(start: dt.datetime, end: dt.datetime) -> float:
    """The duration from ``start`` to ``end`` in days (0 when negative)."""
    return max((end - start).total_seconds(), 0.0) / 86400.0


def query_bbox(bbox: Sequence[Any]) -> tuple[BaseGeometry, str]:
    """The query box as a geometry (a point or line when degenerate) and as text; checked like export_item's."""
    west, south, east, north = corners(check_bbox(bbox))
    text = f"[{west:g}, {south:g}, {east:g}, {north:g}]"
    if west <= east and (west == east or south == north):
        if (west, south) == (east, north):
            return Point(west, south), text
        return LineString([(west, south), (east, north)]), text
    return footprint_of((west, south, east, north)), text
