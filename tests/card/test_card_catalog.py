"""Cards for a whole catalog: one card beside each Item, an index linking them, Items outside refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES_DIR

from mlm_export import build_catalog
from mlm_export.card.catalog import write_catalog_cards
from mlm_export.errors import ConfigurationError, OutputExistsError


@pytest.mark.filterwarnings("ignore:.*south > north:UserWarning")
def test_one_card_per_item_and_an_index(tmp_path: Path) -> None:
    names = ["item_basic.json", "item_datacube_variables.json", "item_multi_io.json"]
    collection = build_catalog([EXAMPLES_DIR / n for n in names], tmp_path / "cat", title="Examples <b>")
    index = write_catalog_cards(collection.get_self_href())
    assert index == (tmp_path / "cat" / "index.html").resolve()
    page = index.read_text()
    ids = [json.loads((EXAMPLES_DIR / n).read_text())["id"] for n in names]
    for item_id in ids:
        assert f'<a href="{item_id}/{item_id}.html">' in page
        assert (tmp_path / "cat" / item_id / f"{item_id}.html").is_file()
    assert "<h1>Examples &lt;b&gt;</h1>" in page
    assert page.count('class="status valid"') == 3
    with pytest.raises(OutputExistsError):
        write_catalog_cards(collection.get_self_href())
    write_catalog_cards(collection.get_self_href(), overwrite=True)


def test_item_link_outside_the_catalog_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    collection = {"type": "Collection", "id": "c", "links": [{"rel": "item", "href": "../outside.json"}]}
    (tmp_path / "cat" / "collection.json").write_text(json.dumps(collection))
    (tmp_path / "outside.json").write_text(json.dumps({"type": "Feature"}))
    with pytest.raises(ConfigurationError, match="outside the catalog"):
        write_catalog_cards(tmp_path / "cat" / "collection.json")
    assert not (tmp_path / "outside.html").exists()
