"""The footprint map: bbox/geometry reading, 0..360 longitudes, the antimeridian, and the bad boxes."""

from __future__ import annotations

import re

import pytest

from mlm_export.card.map import footprint, footprint_path, land_path, map_svg


def item(bbox=None, geometry=None) -> dict:
    document = {"type": "Feature", "id": "x", "properties": {}}
    if bbox is not None:
        document["bbox"] = bbox
    if geometry is not None:
        document["geometry"] = geometry
    return document


def xs(path: str) -> list[float]:
    return [float(x) for x in re.findall(r"[ML](-?[\d.]+) ", path)]


def test_land_outline_is_natural_earth_in_degrees() -> None:
    rings = [[float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", ring)] for ring in land_path().split("M")[1:]]
    assert len(rings) > 100
    for numbers in rings:
        lons, ys = numbers[0::2], numbers[1::2]
        assert min(lons) < 180 and max(lons) > -180  # every ring (or its 360-degree copy) shows on the map
        assert -90 <= min(ys) and max(ys) <= 90
    assert max(max(r[1::2]) for r in rings) == 90.0  # Antarctica closed along the south pole (y = -lat)
    assert 50_000 < len(land_path()) < 400_000  # compact package data


def test_bbox_is_a_rectangle_in_degrees() -> None:
    found = footprint(item([5.0, 45.0, 10.0, 48.0]))
    assert found.rings == [[(5.0, 45.0), (10.0, 45.0), (10.0, 48.0), (5.0, 48.0), (5.0, 45.0)]]
    assert found.problems == []
    assert found.label == "W 5, S 45, E 10, N 48"


def test_three_dimensional_bbox() -> None:
    assert footprint(item([5, 45, 0, 10, 48, 3000])).bbox == (5.0, 45.0, 10.0, 48.0)


def test_longitudes_0_to_360_are_normalised() -> None:
    found = footprint(item([233.6, 22.6, 297.5, 54.2]))
    assert found.bbox == pytest.approx((233.6 - 360, 22.6, 297.5 - 360, 54.2))
    assert min(xs(footprint_path(found.rings))) == pytest.approx(-126.4, abs=1e-3)


def test_antimeridian_bbox_is_drawn_on_both_sides() -> None:
    found = footprint(item([170.0, -20.0, -170.0, 10.0]))
    assert "crosses the antimeridian" in found.label
    path = footprint_path(found.rings)
    assert path.count("M") == 2  # the same box drawn at +0 and -360 degrees
    copies = sorted(sorted(xs("M" + part)) for part in path.split("M")[1:])
    assert copies[0] == pytest.approx([-190, -190, -190, -170, -170])  # shifted by -360: shows east of -180
    assert copies[1] == pytest.approx([170, 170, 170, 190, 190])  # as given: shows west of 180


def test_antimeridian_geometry_ring_is_unwrapped() -> None:
    ring = [[175, 0], [-175, 0], [-175, 5], [175, 5], [175, 0]]
    found = footprint(item(geometry={"type": "Polygon", "coordinates": [ring]}))
    assert [lon for lon, _ in found.rings[0]] == [175, 185, 185, 175, 175]


def test_south_north_of_north_is_drawn_nowhere_and_listed() -> None:
    found = footprint(item([5.0, 48.0, 10.0, 45.0]))
    assert found.rings == []
    assert found.problems == ["bbox south (48) is north of its north (45); it is not drawn."]
    assert 'class="m-fp"' not in map_svg(found)


def test_no_bbox_no_geometry_is_global_unknown() -> None:
    found = footprint(item())
    assert found.rings == [] and found.problems == []
    assert found.label == "global / unknown"


@pytest.mark.parametrize(
    "bbox",
    [
        [1, 2, 3],
        ["a", 1, 2, 3],
        [0, -100, 10, 10],
        [-400, 0, 10, 10],
        [0, 0, float("nan"), 1],
        "0,0,1,1",
        [True, 0, 1, 1],
    ],
)
def test_bad_bboxes_are_problems_not_crashes(bbox) -> None:
    found = footprint(item(bbox))
    assert found.rings == [] and len(found.problems) == 1


def test_bad_geometry_falls_back_to_bbox() -> None:
    found = footprint(item([5, 45, 10, 48], geometry={"type": "Polygon", "coordinates": [[["x", 1]]]}))
    assert found.source == "bbox" and len(found.rings) == 1
    assert "geometry is not a valid" in found.problems[0]


def test_huge_geometry_falls_back_to_bbox() -> None:
    ring = [[i * 1e-5, 0.0] for i in range(30_000)] + [[0.0, 1.0], [0.0, 0.0]]
    found = footprint(item([0, 0, 1, 1], geometry={"type": "Polygon", "coordinates": [ring]}))
    assert found.source == "bbox"


def test_small_footprint_gets_a_marker() -> None:
    svg = map_svg(footprint(item([6.0, 46.0, 6.1, 46.1])))
    assert '<circle class="m-fp" cx="6.050" cy="-46.050"' in svg


def test_collection_extent() -> None:
    collection = {"type": "Collection", "extent": {"spatial": {"bbox": [[-10, 35, 30, 60]]}}}
    assert footprint(collection).bbox == (-10, 35, 30, 60)


def test_standalone_svg_is_xml() -> None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(map_svg(footprint(item([5, 45, 10, 48])), standalone=True).split("\n", 1)[1])
    assert root.get("viewBox") == "-180 -90 360 180"


def test_ring_cut_at_the_antimeridian_is_kept() -> None:
    world = [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]
    found = footprint(item([-180, -90, 180, 90], geometry={"type": "Polygon", "coordinates": [world]}))
    assert found.rings == [[(-180, -90), (180, -90), (180, 90), (-180, 90), (-180, -90)]]
    assert found.label == "global: W -180, S -90, E 180, N 90"


def test_point_geometry_draws_its_bbox_with_a_marker() -> None:
    found = footprint(item([7.0, 46.0, 7.0, 46.0], geometry={"type": "Point", "coordinates": [7.0, 46.0]}))
    assert found.problems == [] and found.source == "bbox"
    assert '<circle class="m-fp" cx="7.000" cy="-46.000"' in map_svg(found)
