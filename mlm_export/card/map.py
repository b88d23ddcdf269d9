"""The footprint map of a model card: an Item's geometry (or bbox) on a Natural Earth 110 m land outline, as SVG.

The map is an equirectangular projection in plain degrees (``viewBox="-180 -90 360 180"``, x = longitude,
y = -latitude), so a point (lon, lat) lies at ``((lon + 180) / 360, (90 - lat) / 180)`` of the drawing. Shapes that
cross the antimeridian are drawn with continuous longitudes and repeated 360 degrees to the left and right; the
viewBox clips what falls outside. Longitudes in 0..360 are normalised to -180..180. Only numbers computed here go
into the SVG: no text of the Item is ever written into it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

#: Fill colour of the footprint (also used by the tests' pixel check).
FOOTPRINT_COLOUR = "#d6336c"
#: More points than this in a geometry: the bbox is drawn instead (an Item is untrusted input).
MAX_POINTS = 20_000
#: Footprints smaller than this (degrees, both ways) also get a marker so that they can be seen.
SMALL_FOOTPRINT = 3.0

Ring = list[tuple[float, float]]


@dataclass
class Footprint:
    """What the map draws: rings in lon/lat (longitudes continuous), the bbox as text, and problems found."""

    rings: list[Ring] = field(default_factory=list)
    bbox: tuple[float, float, float, float] | None = None
    problems: list[str] = field(default_factory=list)
    source: str = "none"

    @property
    def label(self) -> str:
        """A sentence for the map's caption."""
        if not self.rings:
            return "global / unknown" if not self.problems else "not drawn (see problems)"
        if self.bbox is None:
            return f"from the {self.source}"
        west, south, east, north = self.bbox
        crossing = " (crosses the antimeridian)" if west > east else ""
        world = "global: " if (west, south, east, north) == (-180, -90, 180, 90) else ""
        return f"{world}W {west:g}, S {south:g}, E {east:g}, N {north:g}{crossing}"


@lru_cache(maxsize=1)
def land_path() -> str:
    """SVG path data of the Natural Earth 110 m land outline (package data, see ``fixtures/make_land_outline.py``)."""
    return resources.files("mlm_export.card").joinpath("data/land-110m.path").read_text(encoding="ascii")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def normalise_longitude(lon: float) -> float:
    """-180..180 for a longitude given in -180..180 or 0..360."""
    return lon - 360.0 if lon > 180.0 else lon


def _bbox(value: Any, problems: list[str]) -> tuple[float, float, float, float] | None:
    """The 2D bbox (W, S, E, N) of a bbox value, longitudes normalised; None with a problem when unusable."""
    if value is None:
        return None
    numbers = [_number(v) for v in value] if isinstance(value, list) else []
    if len(numbers) not in (4, 6) or any(n is None for n in numbers):
        problems.append("bbox is not a list of 4 or 6 numbers; it is not drawn.")
        return None
    west, south, east, north = (numbers[0], numbers[1], numbers[3], numbers[4]) if len(numbers) == 6 else numbers
    if not (-180 <= west <= 360 and -180 <= east <= 360):
        problems.append(f"bbox longitudes {west:g}, {east:g} are outside -180..360; it is not drawn.")
        return None
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        problems.append(f"bbox latitudes {south:g}, {north:g} are outside -90..90; it is not drawn.")
        return None
    if south > north:
        problems.append(f"bbox south ({south:g}) is north of its north ({north:g}); it is not drawn.")
        return None
    if east - west >= 360:
        return -180.0, south, 180.0, north
    return normalise_longitude(west), south, normalise_longitude(east), north


def unwrap(ring: Ring) -> Ring:
    """The ring with longitudes made continuous (no jump over 180 degrees between neighbours)."""
    out = [ring[0]]
    for lon, lat in ring[1:]:
        previous = out[-1][0]
        while lon - previous > 180:
            lon -= 360
        while previous - lon > 180:
            lon += 360
        out.append((lon, lat))
    return out


def _ring(value: Any) -> Ring | None:
    """A ring of (lon, lat) from GeoJSON positions, or None when a position is not valid WGS84."""
    if not isinstance(value, list) or len(value) < 4:
        return None
    ring = []
    for position in value:
        if not isinstance(position, list) or len(position) < 2:
            return None
        lon, lat = _number(position[0]), _number(position[1])
        if lon is None or lat is None or not (-180 <= lon <= 360 and -90 <= lat <= 90):
            return None
        ring.append((normalise_longitude(lon), lat))
    # A ring on the +-180 meridian is already cut there (RFC 7946 3.1.9), e.g. the whole globe: keep it as given.
    return ring if any(abs(lon) == 180 for lon, _ in ring) else unwrap(ring)


def _geometry_rings(geometry: Any) -> list[Ring] | None:
    """Rings of a Polygon/MultiPolygon geometry; None when absent, of another type, invalid or too large."""
    if not isinstance(geometry, Mapping) or not isinstance(geometry.get("coordinates"), list):
        return None
    kind, coordinates = geometry.get("type"), geometry["coordinates"]
    polygons = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else None
    if not polygons or not all(isinstance(p, list) for p in polygons):
        return None
    if sum(len(r) for p in polygons for r in p if isinstance(r, list)) > MAX_POINTS:
        return None
    rings = [_ring(r) for p in polygons for r in p]
    if not rings or any(r is None for r in rings):
        return None
    return [r for r in rings if r is not None]


def _bbox_ring(bbox: tuple[float, float, float, float]) -> Ring:
    west, south, east, north = bbox
    if east < west:  # crosses the antimeridian
        east += 360
    return [(west, south), (east, south), (east, north), (west, north), (west, south)]


def footprint(document: Mapping[str, Any]) -> Footprint:
    """The footprint of an Item (geometry, else bbox) or a Collection (its spatial extent's boxes)."""
    problems: list[str] = []
    if document.get("type") == "Collection":
        extent = document.get("extent")
        spatial = extent.get("spatial") if isinstance(extent, Mapping) else None
        boxes = spatial.get("bbox") if isinstance(spatial, Mapping) else None
        boxes = boxes if isinstance(boxes, list) else []
        parsed = [_bbox(box, problems) for box in boxes[:1]]
        bbox = parsed[0] if parsed else None
        return Footprint([_bbox_ring(bbox)] if bbox else [], bbox, problems, "spatial extent")
    bbox = _bbox(document.get("bbox"), problems)
    geometry = document.get("geometry")
    rings = _geometry_rings(geometry)
    is_area = isinstance(geometry, Mapping) and geometry.get("type") in ("Polygon", "MultiPolygon")
    if is_area and rings is None:
        problems.append("geometry is not a valid Polygon/MultiPolygon in WGS84; the bbox is drawn instead.")
    if rings:
        return Footprint(rings, bbox, problems, "geometry")
    return Footprint([_bbox_ring(bbox)] if bbox else [], bbox, problems, "bbox")


def _subpath(ring: Ring, shift: float) -> str:
    head, *tail = ring
    return f"M{head[0] + shift:.3f} {-head[1]:.3f}" + "".join(f"L{x + shift:.3f} {-y:.3f}" for x, y in tail) + "Z"


def footprint_path(rings: Sequence[Ring]) -> str:
    """SVG path data of the rings, repeated at -360/+360 degrees where they pass the map's edges."""
    parts = []
    for ring in rings:
        lons = [lon for lon, _ in ring]
        for shift in (-360.0, 0.0, 360.0):
            if min(lons) + shift < 180 and max(lons) + shift > -180:
                parts.append(_subpath(ring, shift))
    return "".join(parts)


def _markers(rings: Sequence[Ring]) -> str:
    """Circles over footprints too small to see at world scale."""
    lons = [lon for ring in rings for lon, _ in ring]
    lats = [lat for ring in rings for _, lat in ring]
    if max(lons) - min(lons) > SMALL_FOOTPRINT or max(lats) - min(lats) > SMALL_FOOTPRINT:
        return ""
    lon = (max(lons) + min(lons)) / 2
    lon = lon - 360 if lon > 180 else lon + 360 if lon < -180 else lon
    lat = (max(lats) + min(lats)) / 2
    return f'<circle class="m-fp" cx="{lon:.3f}" cy="{-lat:.3f}" r="2.5"/>'


_STYLE = (
    ".m-sea{fill:#cfe0ee}.m-land{fill:#a7b59a;stroke:#6f8062;stroke-width:.25}"
    ".m-grid{fill:none;stroke:#ffffff;stroke-opacity:.5;stroke-width:.2}"
    f".m-fp{{fill:{FOOTPRINT_COLOUR};fill-opacity:.75;fill-rule:evenodd;stroke:{FOOTPRINT_COLOUR};stroke-width:.6}}"
    "@media (prefers-color-scheme: dark){.m-sea{fill:#1b2838}.m-land{fill:#4b5a45;stroke:#7d8f72}"
    ".m-grid{stroke:#8aa0b4;stroke-opacity:.35}}"
)


def map_svg(footprint_: Footprint, *, standalone: bool = False) -> str:
    """The map as SVG markup (an ``<svg>`` element; with an XML prolog when ``standalone``)."""
    grid = "".join(f"M{lon} -90V90" for lon in range(-150, 180, 30)) + "".join(
        f"M-180 {lat}H180" for lat in range(-60, 90, 30)
    )
    shapes = ""
    if footprint_.rings:
        shapes = f'<path class="m-fp" d="{footprint_path(footprint_.rings)}"/>' + _markers(footprint_.rings)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" class="map" viewBox="-180 -90 360 180" width="720" height="360" '
        'role="img" aria-label="footprint map">'
        f"<style>{_STYLE}</style>"
        '<rect class="m-sea" x="-180" y="-90" width="360" height="180"/>'
        f'<path class="m-land" d="{land_path().replace(chr(10), "")}"/>'
        f'<path class="m-grid" d="{grid}"/>{shapes}</svg>'
    )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n" if standalone else svg
