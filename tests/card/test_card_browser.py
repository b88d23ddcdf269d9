"""Cards as a person sees them: each HTML card opened in headless Chromium (the system browser, driven by Playwright,
JavaScript off) at 1280 px. Checked from the rendered page: no console message, no request, no script, no horizontal
scroll, every band and class name in the visible text, and the footprint's colour where the bbox centre projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from card_items import EXAMPLES, HOSTILE, hostile_item, names
from chromium import browser_session, is_footprint, look
from conftest import EXAMPLES_DIR
from factories import item_dict
from markdown_it import MarkdownIt

from mlm_export.card import write_card


@pytest.fixture(scope="module")
def browser():
    yield from browser_session()


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    """Screenshots are kept as test artifacts under pytest's temporary directory."""
    return tmp_path_factory.mktemp("card-screenshots")


def centre(document: dict) -> tuple[float, float]:
    """Where the footprint's middle is, from the JSON: bbox centre (0..360 longitudes folded), else the geometry's."""
    west, south, east, north = (
        document["bbox"][:4] if len(document["bbox"]) == 4 else document["bbox"][0:2] + document["bbox"][3:5]
    )
    if south > north:  # the bad datacube bbox: its geometry is drawn
        ring = document["geometry"]["coordinates"][0]
        lons, lats = [p[0] for p in ring], [p[1] for p in ring]
        west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    if east < west:
        east += 360
    lon = (west + east) / 2
    return (lon - 360 if lon > 180 else lon), (south + north) / 2


def assert_clean(seen) -> None:
    assert seen.console == [], seen.console
    assert seen.page_errors == [] and seen.requests == [] and seen.scripts == 0
    assert seen.scroll_width <= 1280 and seen.scroll_width <= seen.client_width  # no horizontal scroll


def open_card(browser, document_or_path, directory: Path, screens: Path, name: str, validate=True, **kwargs):
    html = directory / f"{name}.html"
    write_card(document_or_path, html, overwrite=True, validate=validate)
    return look(browser, html, screens / f"{name}.png", **kwargs)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name != "collection.json"], ids=lambda p: p.stem)
def test_official_example_in_chromium(browser, screens, tmp_path, path: Path) -> None:
    document = json.loads(path.read_text())
    seen = open_card(browser, path, tmp_path, screens, path.stem)
    assert_clean(seen)
    bands, classes = names(document)
    for name in bands + classes:
        assert name in seen.text, name
    lon, lat = centre(document)
    assert is_footprint(seen.pixel(lon, lat)), seen.pixel(lon, lat)
    assert not is_footprint(seen.pixel(lon + 180 if lon < 0 else lon - 180, -lat))  # the antipode is not covered


def test_collection_in_chromium(browser, screens, tmp_path) -> None:
    seen = open_card(browser, EXAMPLES_DIR / "collection.json", tmp_path, screens, "collection")
    assert_clean(seen)
    assert "Machine Learning Model examples" in seen.text
    assert is_footprint(seen.pixel((-7.88 + 27.91) / 2, (37.14 + 58.22) / 2))


def exported_conv(directory: Path) -> dict:
    """A real PyTorch model measured by export_item: 4 bands, 5 classes, a bbox across the antimeridian."""
    from torch_models import TinyConvNet

    from mlm_export import export_item

    classes = [{"name": n, "description": n.title(), "color_hint": c}
               for n, c in zip(["water", "forest", "crops", "urban", "bare"],
                               ["0000FF", "00AA00", "FFFF00", "FF0000", "888888"], strict=True)]  # fmt: skip
    item = export_item(TinyConvNet(4, 5), input_shape=[-1, 4, 32, 32], bands=["B02", "B03", "B04", "B08"],
                       classes=classes, bbox=[170.0, -20.0, -170.0, 10.0], datetime="2024-05-01T00:00:00Z",
                       artifact_dir=directory)  # fmt: skip
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def test_exported_torch_item_across_the_antimeridian(browser, screens, tmp_path) -> None:
    document = exported_conv(tmp_path)
    seen = open_card(browser, document, tmp_path, screens, "exported-torch")
    assert_clean(seen)
    for name in ["B02", "B03", "B04", "B08", "water", "forest", "crops", "urban", "bare"]:
        assert name in seen.text
    assert "validation: valid" in seen.text
    assert "crosses the antimeridian" in seen.text
    assert is_footprint(seen.pixel(175.0, -5.0)) and is_footprint(seen.pixel(-175.0, -5.0))  # both sides
    assert not is_footprint(seen.pixel(0.0, -5.0))  # not the long way round


def test_exported_onnx_item_global_then_unknown(browser, screens, tmp_path) -> None:
    import onnx
    from onnx_models import linear_model

    from mlm_export import export_item

    path = tmp_path / "linear.onnx"
    onnx.save(linear_model(6, 3), path)
    document = export_item(path).to_dict(include_self_link=False, transform_hrefs=False)
    grid = [(lon, lat) for lon in range(-170, 180, 20) for lat in range(-80, 90, 20)]
    seen = open_card(browser, document, tmp_path, screens, "exported-onnx-global")  # no extent given: the globe
    assert_clean(seen)
    assert "global: W -180, S -90, E 180, N 90" in seen.text
    assert all(is_footprint(seen.pixel(lon, lat)) for lon, lat in grid)  # covered everywhere

    del document["bbox"]
    document["geometry"] = None  # valid STAC: no footprint at all
    seen = open_card(browser, document, tmp_path, screens, "exported-onnx-unknown")
    assert_clean(seen)
    assert "Footprint: global / unknown" in seen.text and "validation: valid" in seen.text
    assert not any(is_footprint(seen.pixel(lon, lat)) for lon, lat in grid)  # nothing drawn anywhere


def test_factory_item_small_footprint_and_dark_mode(browser, screens, tmp_path) -> None:
    document = item_dict(tmp_path)
    document["bbox"] = [6.0, 46.0, 6.5, 46.5]
    document["geometry"] = None
    seen = open_card(browser, document, tmp_path, screens, "factory-dark", dark=True)
    assert_clean(seen)
    assert is_footprint(seen.pixel(6.25, 46.25))
    background = seen.image.getpixel((2, 2))
    assert sum(background) < 3 * 60, background  # prefers-color-scheme: dark is honoured


def test_hostile_strings_are_text_in_chromium(browser, screens, tmp_path) -> None:
    seen = open_card(browser, hostile_item(tmp_path), tmp_path, screens, "hostile")
    assert_clean(seen)  # no script ran or exists, nothing was fetched (the <img> in the description is text)
    assert HOSTILE in seen.text
    assert '<img src=x onerror="alert(2)">' in seen.text


def test_hostile_markdown_card_in_chromium(browser, screens, tmp_path) -> None:
    written = write_card(hostile_item(tmp_path), tmp_path / "card.md", validate=False)
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(written.path.read_text())
    page = tmp_path / "card-md.html"  # the Markdown as a permissive renderer would show it
    page.write_text(f"<!DOCTYPE html><meta charset=utf-8><body>{body}</body>", encoding="utf-8")
    seen = look(browser, page, screens / "markdown.png")
    assert seen.scripts == 0 and seen.page_errors == [] and seen.console == []
    assert HOSTILE in seen.text
    assert seen.requests == [written.map_path.as_uri()]  # only the map SVG written beside the card


def test_five_thousand_classes_fit_and_fold(browser, screens, tmp_path) -> None:
    document = item_dict(tmp_path)
    output = document["properties"]["mlm:output"][0]
    output["classification:classes"] = [{"value": i, "name": f"class-{i:04d}"} for i in range(5000)]
    output["result"]["shape"] = [-1, 5000]
    # validate=False: validating 5,000 classes is slow, and its speed belongs to the validator (benchmarks/)
    seen = open_card(browser, document, tmp_path, screens, "5000-classes", validate=False)
    assert_clean(seen)
    assert "class-0000" in seen.text and "class-0024" in seen.text
    assert "class-0025" not in seen.text and "class-4999" not in seen.text  # folded in a closed <details>
    assert "Show the other 4975 of 5000 classes" in seen.text


def test_card_prints_on_a4(browser, screens, tmp_path) -> None:
    pdf = screens / "item_eo_bands.pdf"
    seen = open_card(browser, EXAMPLES_DIR / "item_eo_bands.json", tmp_path, screens, "print", pdf=pdf)
    assert seen.console == [] and seen.requests == []
    assert seen.scroll_width <= 794  # A4 width: nothing cut at the right edge
    assert "B12" in seen.text and "SeaLake" in seen.text
    assert "Raw JSON" not in seen.text  # folded parts are left out of the print
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.read_bytes().count(b"/Type /Page\n") in range(1, 6)


def timeline_boxes(browser, html: Path, screenshot: Path) -> dict:
    """Boxes (px) of the When bar, its range and today's mark (None when absent), as Chromium lays them out."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(html.resolve().as_uri())
        page.locator(".timeline").screenshot(path=str(screenshot))
        selectors = {"bar": ".timeline", "range": ".timeline .span", "today": ".timeline .today"}
        boxes = {key: page.locator(sel).bounding_box() if page.locator(sel).count() else None
                 for key, sel in selectors.items()}  # fmt: skip
        boxes["ends"] = page.locator(".ends span").all_inner_texts()
        return boxes
    finally:
        context.close()


def test_when_bar_spans_the_models_interval(browser, screens, tmp_path) -> None:
    """The range fills the bar between the start and end labels; today is marked only when inside the interval."""
    import datetime as dt

    past = item_dict(tmp_path)
    past["properties"].update(start_datetime="2017-01-01T00:00:00Z", end_datetime="2018-12-31T23:59:59Z")
    write_card(past, tmp_path / "past.html", validate=False)
    boxes = timeline_boxes(browser, tmp_path / "past.html", screens / "when-past.png")
    assert boxes["ends"][0] == "2017-01-01" and boxes["ends"][-1] == "2018-12-31" and boxes["today"] is None
    assert boxes["range"]["width"] >= boxes["bar"]["width"] - 2 * 2  # the bar's 1 px borders (and rounding)

    now = dt.datetime.now(dt.UTC)
    ongoing = item_dict(tmp_path)
    start, end = now - dt.timedelta(days=300), now + dt.timedelta(days=100)
    ongoing["properties"].update(start_datetime=start.isoformat(), end_datetime=end.isoformat())
    write_card(ongoing, tmp_path / "ongoing.html", validate=False)
    boxes = timeline_boxes(browser, tmp_path / "ongoing.html", screens / "when-ongoing.png")
    assert boxes["range"]["width"] >= boxes["bar"]["width"] - 2 * 2
    fraction = (boxes["today"]["x"] - boxes["bar"]["x"]) / boxes["bar"]["width"]
    assert fraction == pytest.approx(300 / 400, abs=0.01)  # 300 of the interval's 400 days have passed
