"""publish() streams: a generator is read at most two chunks ahead of what was sent, problems in a later chunk leave the
chunks before it stored (and only them), ids are checked with one query per chunk, memory stays flat."""

from __future__ import annotations

import copy
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES_DIR
from local_stac import LOOPBACK, GatedProxy, without_nulls

from mlm_export.errors import ConfigurationError, ItemExistsError, ItemValidationError, STACAPIError
from mlm_export.stac import publish as publish_module
from mlm_export.stac.local_api import LocalSTACAPI
from mlm_export.stac.publish import publish

pytestmark = LOOPBACK


def small_items(count: int, prefix: str = "stream") -> Iterator[dict[str, Any]]:
    """``count`` small valid model Items with remote hrefs, footprints spread over the globe, one at a time."""
    template = json.loads((EXAMPLES_DIR / "item_basic.json").read_text())
    template.pop("collection", None)
    template["links"] = []
    for index in range(count):
        item = copy.deepcopy(template)
        west, south = -170 + (index * 7) % 330, -60 + (index * 3) % 110
        item["id"] = f"{prefix}-{index:05d}"
        item["bbox"] = [west, south, west + 10, south + 10]
        ring = [[west, south], [west + 10, south], [west + 10, south + 10], [west, south + 10], [west, south]]
        item["geometry"] = {"type": "Polygon", "coordinates": [ring]}
        yield item


def _stored(api: LocalSTACAPI, collection: str) -> dict[str, dict[str, Any]]:
    features = httpx.get(f"{api.url}/collections/{collection}/items", params={"limit": 1000}).json()["features"]
    return {f["id"]: f for f in features}


def test_a_generator_is_read_two_chunks_ahead_of_what_was_sent(
    stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "CHUNK_SIZE", 3)
    items = list(small_items(12, "lazy"))
    sent_when_read: list[int] = []
    with GatedProxy(stac_api.url) as proxy:

        def generate() -> Iterator[dict[str, Any]]:
            for item in items:
                sent_when_read.append(proxy.bulk_requests)
                yield item

        result = publish(generate(), proxy.url, "lazy", progress=False)
    assert result.published == tuple(i["id"] for i in items) and result.collection_created
    # Item i is in chunk i // 3; the chunks before the two in flight had been sent when it was read
    assert publish_module.IN_FLIGHT == 2
    assert [sent >= i // 3 - 2 for i, sent in enumerate(sent_when_read)] == [True] * 12
    assert sent_when_read[-1] >= 1  # the first chunk landed before the last was read
    assert [r for r in proxy.requests if r.startswith("POST /search")] == []  # a Collection just made holds no id
    assert proxy.requests[-1] == "PUT /collections/lazy"  # extent and summaries of every Item, once at the end
    collection = httpx.get(f"{stac_api.url}/collections/lazy").json()
    bboxes = [i["bbox"] for i in items]
    expected = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes),
                max(b[3] for b in bboxes)]  # fmt: skip
    assert collection["extent"]["spatial"]["bbox"] == [expected]
    assert collection["description"].startswith("12 machine-learning model(s)")
    stored = _stored(stac_api, "lazy")
    assert sorted(stored) == sorted(result.published)
    assert [(stored[i["id"]]["properties"], stored[i["id"]]["assets"]) for i in items] == [
        (without_nulls(i["properties"]), without_nulls(i["assets"])) for i in items
    ]  # read back whole (pgstac drops null members) after the Collection's update


@pytest.mark.parametrize("if_exists", ["error", "skip", "replace"])
def test_an_id_already_there_in_a_later_chunk(
    if_exists: str, stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "CHUNK_SIZE", 3)
    collection = f"later-{if_exists}"
    items = list(small_items(9, collection))
    ids = [i["id"] for i in items]
    before = copy.deepcopy(items[7])
    before["properties"]["description"] = "stored before"
    items[7]["properties"]["description"] = "sent now"
    publish([before], stac_api.url, collection, progress=False)
    with GatedProxy(stac_api.url) as proxy:
        if if_exists == "error":
            with pytest.raises(ItemExistsError, match=rf"'{ids[7]}'.*409.*6 of 9 Items landed") as caught:
                publish(items, proxy.url, collection, progress=False)
            assert caught.value.published == ids[:6]
        else:
            result = publish(items, proxy.url, collection, if_exists=if_exists, progress=False)  # type: ignore[arg-type]
    searches = [r for r in proxy.requests if r == "POST /search"]
    bulks = [r for r in proxy.requests if r.endswith("/bulk_items")]
    stored = _stored(stac_api, collection)
    if if_exists == "error":  # chunks 1 and 2 stored, chunk 3 (with the id already there) and nothing after it
        assert (len(searches), len(bulks)) == (3, 2)
        assert sorted(stored) == sorted([*ids[:6], ids[7]])
        assert stored[ids[7]]["properties"]["description"] == "stored before"
    elif if_exists == "skip":
        assert (len(searches), len(bulks)) == (3, 3)
        assert result.skipped == (ids[7],) and result.published == tuple(i for i in ids if i != ids[7])
        assert sorted(stored) == sorted(ids) and stored[ids[7]]["properties"]["description"] == "stored before"
    else:
        assert (len(searches), len(bulks)) == (0, 3)  # upserts: nothing to ask
        assert result.published == tuple(ids) and result.skipped == ()
        assert sorted(stored) == sorted(ids) and stored[ids[7]]["properties"]["description"] == "sent now"


def test_an_invalid_item_in_a_later_chunk_leaves_the_chunks_before(
    stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "CHUNK_SIZE", 3)
    items = list(small_items(9, "invalid-later"))
    items[4]["properties"]["mlm:tasks"] = ["sorting"]
    landed = r"The 3 Items before its chunk landed \(error.published lists them\); nothing from its chunk on was sent"
    with pytest.raises(ItemValidationError, match=rf"invalid-later-00004.*mlm:tasks.*{landed}") as caught:
        publish(iter(items), stac_api.url, "invalid-later", progress=False)
    ids = [i["id"] for i in items]
    assert caught.value.published == ids[:3]  # type: ignore[attr-defined]
    assert sorted(_stored(stac_api, "invalid-later")) == ids[:3]
    collection = httpx.get(f"{stac_api.url}/collections/invalid-later").json()  # made from the first chunk
    assert collection["extent"]["spatial"]["bbox"] == [[-170, -60, -146, -44]]


def test_a_server_error_with_two_chunks_in_flight_reports_exactly_what_landed(
    stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses chunk 2 late, while chunk 3 was sent and landed: error.published lists 1 and 3."""
    monkeypatch.setattr(publish_module, "CHUNK_SIZE", 3)
    items = list(small_items(12, "in-flight"))
    ids = [i["id"] for i in items]
    with GatedProxy(stac_api.url, refuse_bulk_with=ids[4]) as proxy:
        refused = r"'in-flight-00003'; 6 Items landed\): the server answered 400"  # the count after chunk 3 landed
        with pytest.raises(STACAPIError, match=refused) as caught:
            publish(iter(items), proxy.url, "in-flight", progress=False)
        assert proxy.bulk_requests == 3  # chunk 4 was not sent once chunk 2 failed
    assert caught.value.published == [*ids[:3], *ids[6:9]]  # type: ignore[attr-defined]
    assert sorted(_stored(stac_api, "in-flight")) == [*ids[:3], *ids[6:9]]


def test_a_duplicate_id_later_in_the_stream_is_refused_there(
    stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "CHUNK_SIZE", 3)
    items = list(small_items(6, "duplicate"))
    items[4]["id"] = items[1]["id"]
    with pytest.raises(ConfigurationError, match=r"'duplicate-00001' of an Item before it.*The 3 Items") as caught:
        publish(iter(items), stac_api.url, "duplicate", progress=False)
    assert caught.value.published == [i["id"] for i in items[:3]]  # type: ignore[attr-defined]


def _peak_bytes(count: int, url: str, collection: str) -> int:
    tracemalloc.start()
    try:
        result = publish(small_items(count, collection), url, collection, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result.published) == count
    return peak


def test_memory_stays_flat_in_the_number_of_items(stac_api: LocalSTACAPI) -> None:
    publish(small_items(1, "warm-up"), stac_api.url, "warm-up", progress=False)  # imports and schemas, once
    small = _peak_bytes(1000, stac_api.url, "flat-1000")
    large = _peak_bytes(3000, stac_api.url, "flat-3000")
    # what grows is the ids (result.published and the ids seen, ~110 bytes an Item); a kept Item would be ~7 KB.
    # The peak also holds two or three chunks (two in flight, one read) as the threads happen to overlap: +-0.5 MB
    assert (large - small) / 2000 < 700, (small, large)
    assert large <= 1.5 * small, (small, large)
