"""Reading untrusted Item values for the card: colours, links, sizes, time ranges, classes of both spellings."""

from __future__ import annotations

import datetime as dt

import pytest

from mlm_export.card.view import build_card, colour, human_bytes, safe_href, temporal


@pytest.mark.parametrize(
    ("value", "expected"),
    [("00FF00", "#00ff00"), ("#a1B2c3", "#a1b2c3"), ([0, 0, 255], "#0000ff"), ([255, 255, 255, 128], "#ffffff"),
     ("red", None), ("0F0", None), ([256, 0, 0], None), ([True, 0, 0], None), ([0, 0], None), (None, None),
     ("00FF00;background:url(x)", None)],
)  # fmt: skip
def test_colour(value, expected) -> None:
    assert colour(value) == expected


@pytest.mark.parametrize(
    ("href", "linked"),
    [("https://example.com/m.pt", True), ("http://x/y", True), ("./m.onnx", True), ("weights/m.pt", True),
     ("javascript:alert(1)", False), ("JavaScript:alert(1)", False), ("java\tscript:alert(1)", False),
     ("data:text/html,<b>", False), ("//host/x", False), ("file:///etc/passwd", False), ("s3://b/k", False),
     ("", False), (None, False), (["x"], False)],
)  # fmt: skip
def test_only_http_and_relative_hrefs_become_links(href, linked) -> None:
    assert (safe_href(href) is not None) is linked


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (43_000_000, "41.0 MiB"), (-1, ""), (1.5, "")]
)
def test_human_bytes(size, text) -> None:
    assert human_bytes(size) == text


def test_temporal_bar_spans_the_models_interval() -> None:
    """The axis runs from the start to the end label: the range fills the bar; today is marked only inside it."""
    item = {"properties": {"start_datetime": "2010-01-01T00:00:00Z", "end_datetime": "2020-01-01T00:00:00Z"}}
    bar = temporal(item, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))  # today after the end: no mark
    assert (bar["start"], bar["end"], bar["left"], bar["width"], bar["today"]) == (
        "2010-01-01", "2020-01-01", 0.0, 100.0, None
    )  # fmt: skip
    assert temporal(item, dt.datetime(2001, 1, 1, tzinfo=dt.UTC))["today"] is None  # before the start
    inside = temporal(item, dt.datetime(2015, 1, 1, tzinfo=dt.UTC))
    assert inside["today"] == pytest.approx(100 * 1826 / 3652, abs=0.01)  # 5 of 10 years (leap days counted)
    assert (inside["left"], inside["width"]) == (0.0, 100.0)


def test_temporal_open_ends() -> None:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ongoing = temporal({"properties": {"start_datetime": "2020-01-01T00:00:00Z", "end_datetime": None,
                                       "datetime": None}}, now)  # fmt: skip
    assert (ongoing["end"], ongoing["width"], ongoing["today"]) == ("open", 100.0, 100.0)  # runs to today
    until = temporal({"properties": {"start_datetime": None, "end_datetime": "2030-01-01T00:00:00Z"}}, now)
    assert (until["start"], until["width"], until["today"]) == ("open", 100.0, None)  # no scale to place today on


def test_temporal_instant_and_unknown() -> None:
    instant = temporal({"properties": {"datetime": "2021-06-01T00:00:00Z"}})
    assert (instant["label"], instant["left"], instant["width"], instant["today"]) == ("instant", 49.7, 0.6, None)
    assert temporal({"properties": {"datetime": None}}) == {"known": False, "label": "unknown"}
    assert temporal({"properties": {"start_datetime": "not a date"}})["known"] is False


def test_both_class_spellings_and_titles() -> None:
    output = {"result": {"shape": [-1, 2], "dim_order": ["batch", "class"]}}
    new = {
        **output,
        "classification:classes": [{"value": 1, "name": "water", "title": "Open water", "color_hint": "0000FF"}],
    }
    old = {
        **output,
        "classification_classes": [{"value": 0, "name": "land", "color_hint": [10, 20, 30], "nodata": True}],
    }
    card = build_card({"type": "Feature", "properties": {"mlm:output": [new, old]}})
    first, second = card.outputs[0].classes[0], card.outputs[1].classes[0]
    assert (first.value, first.name, first.colour) == ("1", "Open water (water)", "#0000ff")
    assert (second.value, second.name, second.colour, second.nodata) == ("0", "land", "#0a141e", True)
    assert [(d.name, d.size) for d in card.outputs[0].dims] == [("batch", "any"), ("class", "2")]


def test_runtime_reads_the_model_asset_too() -> None:
    document = {
        "type": "Feature",
        "properties": {"mlm:total_parameters": 11_700_000},
        "assets": {"w": {"roles": ["mlm:model"], "mlm:accelerator": "cuda", "file:size": 2048, "href": "w.pt"}},
    }
    runtime = dict(build_card(document).runtime)
    assert runtime == {"parameters": "11,700,000", "model file size": "2.0 KiB (2,048 bytes)", "accelerator": "cuda"}
