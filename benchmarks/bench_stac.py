"""Publishing to the local STAC API and searching a local catalog, each against its baseline in the same run.

Run: ``.venv/bin/python benchmarks/bench_stac.py [--count 1000]``.

- publish: :func:`mlm_export.stac.publish.publish` of ``count`` Items (validation, Collection creation, bulk loads,
  progress off) vs the same bulk requests made with bare ``httpx`` (Collection POST + the same ``bulk_items`` POSTs,
  no validation) into another collection of the same server, alternating, best of ``--rounds``. Target: time
  ratio <= 1.2. One ``POST`` per Item with bare httpx is shown too, as information.
- search: :func:`mlm_export.stac.search.search` over a catalog directory of ``count`` Items (bbox + bands + task)
  vs reading and parsing the same Item files with ``json.load``. Target: <= 0.5 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "mlm-examples" / "item_eo_bands.json"
#: The bands a Sentinel-2 L1C user has: every band the example model reads.
SENTINEL2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def make_items(count: int) -> list[dict[str, Any]]:
    """``count`` valid model Items with remote hrefs, spread over the globe (ids ``model-00000``...)."""
    template = json.loads(EXAMPLE.read_text())
    items = []
    for index in range(count):
        item = copy.deepcopy(template)
        west, south = -170 + (index * 7) % 330, -60 + (index * 3) % 110
        item["id"] = f"model-{index:05d}"
        item["bbox"] = [west, south, west + 10, south + 10]
        item["geometry"] = {"type": "Polygon", "coordinates": [[[west, south], [west + 10, south],
                            [west + 10, south + 10], [west, south + 10], [west, south]]]}  # fmt: skip
        item["links"] = []
        item.pop("collection", None)
        items.append(item)
    return items


def _bare_bulk(url: str, collection: dict[str, Any], documents: list[dict[str, Any]], chunk: int) -> float:
    import httpx

    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/collections", json=collection).raise_for_status()
        for first in range(0, len(documents), chunk):
            part = documents[first : first + chunk]
            body = {"items": {d["id"]: d for d in part}, "method": "insert"}
            client.post(f"/collections/{collection['id']}/bulk_items", json=body).raise_for_status()
    return time.perf_counter() - start


def _bare_single(url: str, collection: dict[str, Any], documents: list[dict[str, Any]]) -> float:
    import httpx

    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/collections", json=collection).raise_for_status()
        for document in documents:
            client.post(f"/collections/{collection['id']}/items", json=document).raise_for_status()
    return time.perf_counter() - start


def _as_sent(items: list[dict[str, Any]], url: str, collection_id: str) -> list[dict[str, Any]]:
    link = {"rel": "collection", "href": f"{url}/collections/{collection_id}", "type": "application/json"}
    return [dict(item, collection=collection_id, links=[link]) for item in items]


def _ours(url: str, items: list[dict[str, Any]], collection_id: str) -> float:
    from mlm_export.stac.publish import publish

    start = time.perf_counter()
    result = publish(items, url, collection_id, progress=False)
    elapsed = time.perf_counter() - start
    assert len(result.published) == len(items)
    return elapsed


def measure_publish(count: int, rounds: int = 5, single: bool = False) -> dict[str, float]:
    """Seconds for publish() and for the bare-httpx bulk baseline, best of ``rounds`` on one local server.

    The two alternate, each round in the other order, into fresh collections, so that neither gets the warmer
    server or the emptier database. ``single=True`` also times one bare POST per Item (information).
    """
    from mlm_export.stac import publish as publish_module
    from mlm_export.stac.collection import collection_document
    from mlm_export.stac.entries import Entry
    from mlm_export.stac.local_api import start_local_api

    items = make_items(count)
    ours: list[float] = []
    bulk: list[float] = []
    with start_local_api() as api:
        collection = collection_document([Entry(i, i["id"], None) for i in items], "bare", None, None)
        collection["links"] = []
        for round_ in range(rounds):
            bare_id = f"bare-bulk-{round_}"
            bare_collection, sent = dict(collection, id=bare_id), _as_sent(items, api.url, bare_id)
            for ours_now in (False, True) if round_ % 2 == 0 else (True, False):
                if ours_now:
                    ours.append(_ours(api.url, items, f"ours-{round_}"))
                else:
                    bulk.append(_bare_bulk(api.url, bare_collection, sent, publish_module.CHUNK_SIZE))
        result = {"count": count, "rounds": rounds, "ours_s": min(ours), "bulk_s": min(bulk),
                  "ratio": min(ours) / min(bulk)}  # fmt: skip
        if single:
            one = dict(collection, id="bare-single")
            result["single_s"] = _bare_single(api.url, one, _as_sent(items, api.url, "bare-single"))
    return result


def measure_search(count: int) -> dict[str, float]:
    """Seconds for a search over a catalog of ``count`` Items and for json.load of the same files."""
    from mlm_export.stac.collection import build_catalog
    from mlm_export.stac.search import search

    with tempfile.TemporaryDirectory() as tmp:
        build_catalog(make_items(count), Path(tmp) / "cat", validate=False)
        files = sorted((Path(tmp) / "cat").glob("*/*.json"))
        start = time.perf_counter()
        for path in files:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        hits = search(Path(tmp) / "cat", bbox=[6, 46, 7, 47], bands=SENTINEL2_BANDS, tasks=["classification"])
        search_s = time.perf_counter() - start
        start = time.perf_counter()
        everything = search(Path(tmp) / "cat", bbox=[-180, -90, 180, 90])
        all_s = time.perf_counter() - start
    return {"count": count, "search_s": search_s, "all_s": all_s, "load_s": load_s, "hits": len(hits),
            "all_hits": len(everything)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure_search(args.count), indent=2))
    print(json.dumps(measure_publish(args.count, args.rounds, single=True), indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
