"""Items the card tests share: the official examples, names read from an Item's JSON, a hostile Item."""

from __future__ import annotations

from pathlib import Path

from conftest import EXAMPLES_DIR
from factories import item_dict

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))
HOSTILE = "<script>alert(1)</script>"


def names(document: dict) -> tuple[list[str], list[str]]:
    """Band/variable names and class names of an Item, read here from the JSON."""
    properties = document.get("properties", {})
    bands, classes = [], []
    for spec in properties.get("mlm:input", []):
        bands += [b["name"] if isinstance(b, dict) else b for b in spec.get("bands") or []]
        bands += spec.get("variables") or []
    for spec in properties.get("mlm:output", []):
        for entry in spec.get("classification:classes") or spec.get("classification_classes") or []:
            classes.append(entry.get("title") or entry["name"])
    return bands, classes


def hostile_item(directory: Path) -> dict:
    document = item_dict(directory)
    properties = document["properties"]
    properties["description"] = '<img src=x onerror="alert(2)"> | **bold** [x](javascript:alert(3))'
    properties["mlm:name"] = "# heading </title><script>alert(4)</script>"
    output = properties["mlm:output"][0]
    output["classification:classes"][0]["name"] = HOSTILE
    output["classification:classes"][1]["description"] = "a | b\n\n# not a heading\n<!-- c"
    document["assets"]["model"]["title"] = "</td></tr></table><script>alert(5)</script>"
    document["assets"]["evil"] = {"href": "javascript:alert(6)", "roles": ["metadata"], "title": "evil"}
    document["assets"]["long"] = {
        "href": "https://example.com/" + "a" * 3000,
        "roles": ["metadata"],
        "title": "L" * 500,
    }
    document["links"] = [{"rel": "derived_from", "href": "javascript:alert(7)", "title": 'data"><script>'}]
    return document
