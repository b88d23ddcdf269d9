"""validate_item on an Item with 10,000 classes (issue 11.10), against stock jsonschema on fewer classes.

Stock jsonschema checks ``uniqueItems`` by comparing every pair of objects (quadratic: 67 s for 10,000 classes);
mlm-export checks it with a set. The baseline runs stock Draft-7 ``uniqueItems`` alone on ``baseline_classes``
classes, so the quadratic cost is visible without waiting a minute.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def _document(directory: Path, count: int) -> dict[str, Any]:
    from factories import item_dict

    document = item_dict(directory)
    output = document["properties"]["mlm:output"][0]
    output["result"]["shape"] = [-1, count]
    output["classification:classes"] = [
        {"value": index, "name": f"class_{index}", "description": f"Class {index}"} for index in range(count)
    ]
    return document


def measure(classes: int = 10_000, baseline_classes: int = 500, repeats: int = 3) -> dict[str, float]:
    """Best CPU time (``process_time``, robust on a shared machine) of validate_item and of stock uniqueItems."""
    from jsonschema import Draft7Validator

    from mlm_export import validate_item

    with tempfile.TemporaryDirectory() as tmp:
        document = _document(Path(tmp), classes)
        validate_item(document)  # schemas loaded and cached by the OS
        ours = []
        for _ in range(repeats):
            start = time.process_time()
            report = validate_item(document)
            ours.append(time.process_time() - start)
        assert report.valid, report.problems[:3]
        stock = Draft7Validator({"type": "array", "uniqueItems": True})
        sample = document["properties"]["mlm:output"][0]["classification:classes"][:baseline_classes]
        start = time.process_time()
        assert stock.is_valid(sample)
        baseline = time.process_time() - start
    return {"ours_s": min(ours), "baseline_s": baseline, "classes": classes, "baseline_classes": baseline_classes}
