"""Cards rendered from the official examples and from hostile, sparse, huge and invalid Items (text checks; the
browser checks are in test_card_browser.py)."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

import pytest
from card_items import EXAMPLES, HOSTILE, hostile_item, names
from conftest import EXAMPLES_DIR
from factories import item_dict
from markdown_it import MarkdownIt

from mlm_export.card import map_svg_of, render_card, write_card
from mlm_export.card.render import CLASSES_SHOWN, markdown_text
from mlm_export.errors import ConfigurationError, ItemValidationError, OutputExistsError


def markdown_html(text: str) -> str:
    """The Markdown as GitHub-flavoured HTML (tables on, raw HTML passed through as a permissive renderer would)."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def visible_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def test_examples_are_eight_items_a_collection_and_one_more() -> None:
    assert len(EXAMPLES) == 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("fmt", ["html", "markdown"])
def test_official_examples_show_every_band_and_class(path: Path, fmt: str) -> None:
    document = json.loads(path.read_text())
    card = render_card(path, fmt)
    text = visible_text(card if fmt == "html" else markdown_html(card))
    bands, classes = names(document)
    for name in bands + classes:
        assert name in text, name
    title = document.get("properties", {}).get("mlm:name") or document.get("title")
    assert title in text
    assert "validation: valid" in " ".join(text.split())


def test_old_rgb_array_and_new_hex_colour_hints_become_swatches() -> None:
    basic = render_card(EXAMPLES_DIR / "item_basic.json")  # classification_classes, color_hint [0, 0, 255]
    assert 'style="background:#0000ff"' in basic and 'style="background:#000000"' in basic
    expression = render_card(EXAMPLES_DIR / "item_bands_expression.json")  # "00FF00"
    assert 'style="background:#00ff00"' in expression


def test_datacube_example_lists_its_bad_bbox(tmp_path: Path) -> None:
    card = render_card(EXAMPLES_DIR / "item_datacube_variables.json")
    assert "bbox south (54.2) is north of its north (22.6); it is not drawn." in card
    assert "10.48550/arXiv.2404.17752" in card  # sci:publications DOI
    assert 'href="https://doi.org/10.48550/arXiv.2404.17752"' in card


def test_z_score_per_band_and_pre_processing() -> None:
    card = render_card(EXAMPLES_DIR / "item_eo_bands.json")
    assert "z-score mean=1354.41 stddev=245.718" in card  # first band, from the JSON: 1354.40546513, 245.71762908
    assert "torchgeo.datamodules.eurosat.EuroSATDataModule.collate_fn" in card
    assert "coastal, 0.443 µm" in card  # eo:bands of the model asset
    assert '<span class="size">any</span><span class="name">batch</span>' in card


def test_html_injection_renders_as_text(tmp_path: Path) -> None:
    card = render_card(hostile_item(tmp_path), validate=False)
    assert "<script" not in card.lower() and "<img" not in card.lower()
    assert not [href for href in re.findall(r'href="([^"]*)"', card) if "javascript" in href]
    assert "javascript:alert(6)" in card  # shown as text
    assert html.escape(HOSTILE) in card
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in card


def test_markdown_injection_renders_as_text(tmp_path: Path) -> None:
    card = render_card(hostile_item(tmp_path), "markdown", validate=False)
    rendered = markdown_html(card)
    assert "<script" not in rendered.lower() and "<img src=x" not in rendered.lower()
    assert "javascript:" not in " ".join(re.findall(r'href="([^"]*)"', rendered))
    assert rendered.count("<h1>") == 1  # only the card's own title, its '#' kept as text
    assert "<h1># heading &lt;/title&gt;&lt;script&gt;alert(4)&lt;/script&gt;</h1>" in rendered
    text = visible_text(rendered)
    assert HOSTILE in text and "a | b # not a heading <!-- c" in text
    for table in re.findall(r"<table>.*?</table>", rendered, flags=re.S):  # no cell broke out of its row
        widths = {row.count("<td") + row.count("<th") for row in re.findall(r"<tr>.*?</tr>", table, flags=re.S)}
        assert len(widths) == 1, table


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a|b", "a\\|b"), ("<b>", "&lt;b&gt;"), ("x\n# y", "x \\# y"), ("[l](u)", "\\[l\\](u)"), (None, "")],
)
def test_markdown_text_escapes(value, expected) -> None:
    assert markdown_text(value) == expected


def test_five_thousand_classes_are_folded(tmp_path: Path) -> None:
    document = item_dict(tmp_path)
    output = document["properties"]["mlm:output"][0]
    output["classification:classes"] = [{"value": i, "name": f"class-{i}"} for i in range(5000)]
    card = render_card(document, validate=False)
    visible, folded = card.split('<details class="more-classes">', 1)
    assert visible.count("<td>class-") == CLASSES_SHOWN
    assert folded.split("</details>", 1)[0].count("<td>class-") == 5000 - CLASSES_SHOWN
    assert f"Show the other {5000 - CLASSES_SHOWN} of 5000 classes" in card


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"type": "Feature"},
        {"type": "Feature", "properties": None, "assets": [], "links": {}, "bbox": None, "geometry": None},
        {
            "type": "Feature",
            "properties": {
                "mlm:input": [None, 3, {"input": None, "bands": [None, {}]}],
                "mlm:output": [
                    "x",
                    {"result": {"shape": "1"}, "classification:classes": [None, {"color_hint": [300, 0, 0]}]},
                ],
                "mlm:tasks": "classification",
                "start_datetime": "yesterday",
            },
        },
    ],
)
def test_missing_and_mistyped_fields_render(document: dict) -> None:
    for fmt in ("html", "markdown"):
        card = render_card(document, fmt)
        assert "validation: " in card and "invalid" in card


def test_no_bbox_says_global_unknown(tmp_path: Path) -> None:
    document = item_dict(tmp_path)
    del document["bbox"]
    document["geometry"] = None
    card = render_card(document, validate=False)
    assert "Footprint: global / unknown" in card
    assert 'class="m-fp"' not in card


def test_invalid_item_lists_problems(tmp_path: Path) -> None:
    document = item_dict(tmp_path)
    document["properties"]["mlm:input"][0]["input"]["shape"] = [-1, 5, 64, 64]  # 4 bands in the list
    card = render_card(document)
    assert '<span class="status invalid" id="validation">invalid</span>' in card
    problems = card.split('id="problems"', 1)[1].split("</section>", 1)[0]
    assert "/properties/mlm:input/0" in problems


def test_write_markdown_writes_map_beside(tmp_path: Path) -> None:
    written = write_card(EXAMPLES_DIR / "item_basic.json", tmp_path / "card.md")
    assert written.map_path == tmp_path / "card-map.svg"
    assert "![Footprint map](<card-map.svg>)" in (tmp_path / "card.md").read_text()
    assert (tmp_path / "card-map.svg").read_text() == map_svg_of(EXAMPLES_DIR / "item_basic.json")
    with pytest.raises(OutputExistsError):
        write_card(EXAMPLES_DIR / "item_basic.json", tmp_path / "card.md")
    with pytest.raises(ConfigurationError):
        write_card(EXAMPLES_DIR / "item_basic.json", tmp_path / "card.txt")


def test_bad_format_and_unreadable_items(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        render_card({}, "pdf")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ItemValidationError):
        render_card(tmp_path / "list.json")
    with pytest.raises(ItemValidationError):
        render_card(tmp_path / "missing.json")


def test_pystac_item_and_top_level_import() -> None:
    import pystac

    import mlm_export

    item = pystac.Item.from_file(str(EXAMPLES_DIR / "item_eo_bands.json"))
    from_pystac = mlm_export.render_card(item).split('<details id="raw">')[0]
    assert from_pystac == render_card(EXAMPLES_DIR / "item_eo_bands.json").split('<details id="raw">')[0]


def test_render_does_not_change_the_item(tmp_path: Path) -> None:
    document = item_dict(tmp_path)
    before = copy.deepcopy(document)
    render_card(document)
    assert document == before
