"""Spatial and temporal extent: the one place that checks a bbox and parses the Item's date-times.

``export_item`` (through :mod:`mlm_export.overrides`) and the catalog's search by bbox use the same rules: WGS84
degrees, west/south/east/north (a 6-number 3-D box keeps its first two and its 4th/5th), latitudes in
[-90, 90], longitudes in [-180, 180], and west > east read as a box across the antimeridian only when that box is
narrower than a hemisphere.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlm_export.errors import ConfigurationError

#: Keys of the temporal extent, in the order they are checked.
DATETIME_KEYS = ("datetime", "start_datetime", "end_datetime")


def check_bbox(bbox: Sequence[Any], argument: str = "bbox") -> tuple[float, ...]:
    """The bbox as floats, checked.

    Args:
        bbox: 4 numbers (west, south, east, north) or 6 (with min/max heights).
        argument: the argument's name, for messages.

    Raises:
        ConfigurationError: not 4 or 6 finite numbers, out of range, or south > north, or west > east without
            crossing the antimeridian.
    """
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{argument}={bbox!r} must have 4 numbers: west, south, east, north.", hint="Use WGS84 degrees."
        ) from exc
    if len(values) not in (4, 6) or not all(math.isfinite(v) for v in values):
        raise ConfigurationError(
            f"{argument}={bbox!r} must have 4 numbers (finite): west, south, east, north.", hint="Use WGS84 degrees."
        )
    west, south, east, north = corners(values)
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise ConfigurationError(
            f"{argument}={bbox!r}: latitudes must lie in [-90, 90].", hint="Order is west, south, east, north."
        )
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise ConfigurationError(f"{argument}={bbox!r}: longitudes must lie in [-180, 180].", hint="Use WGS84 degrees.")
    if south > north:
        raise ConfigurationError(
            f"{argument}={bbox!r}: south {south} is north of north {north}.", hint="Order is west, south, east, north."
        )
    if west > east and not crosses_antimeridian(west, east):
        raise ConfigurationError(
            f"{argument}={bbox!r}: west {west} is east of east {east} and the box does not cross the antimeridian.",
            hint="Order is west, south, east, north; across the antimeridian west > 0 > east.",
        )
    return tuple(values)


def corners(values: Sequence[float]) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a 2-D or 3-D bbox."""
    return values[0], values[1], values[-3 if len(values) == 6 else -2], values[-2 if len(values) == 6 else -1]


def crosses_antimeridian(west: float, east: float) -> bool:
    """Whether west > east describes a box across 180° (narrower than a hemisphere), not a mistake."""
    return west > 0 > east and 360 - (west - east) < 180


def iso_datetime(value: str | dt.datetime, argument: str) -> str:
    """An ISO 8601 date-time with a time zone (UTC when none is given).

    Raises:
        ConfigurationError: ``value`` is not an ISO 8601 date-time.
    """
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigurationError(
                f"{argument}={value!r} is not an ISO 8601 date-time.", hint="Use e.g. 2024-01-31T00:00:00Z."
            ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.isoformat()


def parse_extent(values: Mapping[str, Any]) -> dict[str, Any]:
    """The Item fields of ``bbox``, ``geometry``, ``datetime``, ``start_datetime``, ``end_datetime`` (None: unset).

    Returns:
        Only the fields given; ``datetime`` is None (a range instead of an instant) when start/end are given alone.

    Raises:
        ConfigurationError: a value is invalid, only one of start/end is given, or end is before start.
    """
    changes: dict[str, Any] = {}
    if values.get("bbox") is not None:
        changes["bbox"] = check_bbox(values["bbox"])
    if values.get("geometry") is not None:
        changes["geometry"] = dict(values["geometry"])
    for key in DATETIME_KEYS:
        if values.get(key) is not None:
            changes[key] = iso_datetime(values[key], key)
    start, end = changes.get("start_datetime"), changes.get("end_datetime")
    if (start is None) != (end is None):
        raise ConfigurationError(
            "start_datetime and end_datetime must be given together.",
            hint="Pass both, or a single datetime; for an open end use 9999-12-31T23:59:59Z.",
        )
    if start is not None and dt.datetime.fromisoformat(end) < dt.datetime.fromisoformat(start):
        raise ConfigurationError(
            f"end_datetime={end} is before start_datetime={start}.", hint="Swap them, or fix the dates."
        )
    if start is not None and "datetime" not in changes:
        changes["datetime"] = None
    return changes
