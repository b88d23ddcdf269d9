"""CollectionSummary: the Collection folded chunk by chunk equals the one made from every Item at once."""

from __future__ import annotations

from test_publish_stream import small_items

from mlm_export.stac.api_load import CollectionSummary
from mlm_export.stac.collection import collection_document
from mlm_export.stac.entries import Entry


def test_the_summary_of_chunks_is_the_collection_of_all_items() -> None:
    items = list(small_items(10, "fold"))
    for index, item in enumerate(items):
        properties = item["properties"]
        properties["mlm:tasks"] = [["classification", "regression", "object-detection"][index % 3]]
        properties["mlm:framework"] = ["pytorch", "onnx"][index % 2]
        properties["mlm:total_parameters"] = 1000 + 37 * index
        properties["mlm:accelerator"] = None if index == 4 else "cuda"
        properties.pop("datetime", None)
        properties["start_datetime"] = f"20{10 + index}-01-01T00:00:00Z"
        properties["end_datetime"] = f"20{10 + index}-06-30T12:00:00.5Z" if index != 7 else "2031-01-01T00:00:00Z"
        properties["license"] = "MIT" if index != 9 else "Apache-2.0"
    entries = [Entry(item, item["id"], None) for item in items]
    summary = CollectionSummary("fold")
    for start in range(0, 10, 3):
        summary.add(entries[start : start + 3])
    expected = collection_document(entries, "fold", None, None)
    expected["links"] = []
    assert summary.document is not None and summary.count == 10
    assert summary.document["extent"] == expected["extent"]
    assert summary.document["summaries"] == expected["summaries"]
    assert summary.document["license"] == expected["license"] == "other"
    assert summary.document["summaries"]["mlm:total_parameters"] == {"minimum": 1000, "maximum": 1000 + 37 * 9}
    assert summary.document["extent"]["temporal"]["interval"] == [["2010-01-01T00:00:00Z", "2031-01-01T00:00:00Z"]]
