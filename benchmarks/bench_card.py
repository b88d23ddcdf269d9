"""Rendering time of a model card with 5,000 classes (``render_card``, validation off: its speed is the validator's).

Run: ``.venv/bin/python benchmarks/bench_card.py [--classes 5000] [--repeats 5]``. Baseline, same run: serialising
the same Item with ``json.dumps(indent=2)`` (the card embeds that text too). Target: the card in < 1 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import timeit
from pathlib import Path
from typing import Any


def item_with_classes(count: int) -> dict[str, Any]:
    """A valid factory Item whose output has ``count`` classes."""
    from factories import item_dict

    document = item_dict(Path(tempfile.mkdtemp(prefix="bench-card-")))
    output = document["properties"]["mlm:output"][0]
    output["classification:classes"] = [
        {"value": i, "name": f"class-{i}", "color_hint": f"{i:06X}"} for i in range(count)
    ]
    output["result"]["shape"] = [-1, count]
    return document


def measure(classes: int, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds for the HTML card, the Markdown card and the json.dumps baseline."""
    from mlm_export.card import render_card

    document = item_with_classes(classes)

    def best(function: Any) -> float:
        return min(timeit.repeat(function, number=1, repeat=repeats))

    render_card(document, validate=False)  # warm-up: templates compiled, land outline read
    return {
        "html_s": best(lambda: render_card(document, validate=False)),
        "markdown_s": best(lambda: render_card(document, "markdown", validate=False)),
        "baseline_s": best(lambda: json.dumps(document, indent=2)),
    }


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.classes, args.repeats), indent=2))
