"""STAC API search at catalog scale: time, peak RSS and Items transferred per query, at several catalog sizes.

Starts the local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac, with the computed filters of
:mod:`mlm_export.stac.api_index` unless ``--plain``), loads ``N`` generated Items (:mod:`catalog_items`) per size
straight into pgstac (pypgstac's loader: the load is not what is measured), then runs each query of :data:`QUERIES`
in a child process (time of the ``search`` call, peak RSS over the interpreter's before the call, Items the server
sent; a query under :data:`QUICK_S` runs in three processes, the median reported). Targets (issue 25): a query
with a fixed number of hits (``rare-*``) costs <= 1.5x at 50k what it costs at 5k and < 1 s; broad queries cost in
proportion to their hits.

Run: ``python benchmarks/bench_catalog_api.py --counts 1000,5000`` (add 50000 on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import catalog_items  # noqa: E402

QUERIES: dict[str, dict[str, Any]] = {
    "framework=onnx": {"framework": "onnx"},
    "bands=B02,B03,B04,B08": {"bands": ["B02", "B03", "B04", "B08"]},
    "bbox 10x10 deg": {"bbox": [0.0, 40.0, 10.0, 50.0]},
    "rare-bands": {"bands": catalog_items.RARE_BANDS},
    "rare-framework": {"framework": catalog_items.RARE_FRAMEWORK},
    "rare-channels": {"input_channels": catalog_items.RARE_CHANNELS},
}


def load(api: Any, collection: str, count: int) -> float:
    """Load ``count`` generated Items into ``collection`` (pypgstac, no validation); seconds taken."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    dsn = api.dsn.replace("postgres@", f"postgres:{api.password_file.read_text().strip()}@")
    extent = {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}
    collection_document = {"type": "Collection", "stac_version": "1.0.0", "id": collection, "description": "bench",
                           "license": "proprietary", "extent": extent, "links": []}  # fmt: skip
    start = time.perf_counter()
    with PgstacDB(dsn=dsn) as db:
        loader = Loader(db)
        loader.load_collections(iter([collection_document]), insert_mode=Methods.upsert)
        items = (dict(item, collection=collection) for item in catalog_items.generate_items(count))
        loader.load_items(items, insert_mode=Methods.upsert)
    return time.perf_counter() - start


def child(url: str, collection: str, query: dict[str, Any]) -> dict[str, Any]:
    """One search in this process: seconds, hits, Items transferred, peak RSS added (bytes)."""
    import pystac_client  # noqa: F401 - imported before the RSS baseline

    from mlm_export.stac.matching import parse_query
    from mlm_export.stac.search import search
    from mlm_export.stac.search_api import api_entries

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    hits = search(url, collections=[collection], max_items=10**6, max_pages=10**4, **query)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sent = sum(1 for _ in api_entries(url, parse_query(**query), collections=[collection], max_items=10**6,
                                      max_pages=10**4))  # fmt: skip
    return {"seconds": seconds, "hits": len(hits), "transferred": sent, "rss_added": max(peak - before, 0)}


#: Queries faster than this (seconds) are run three times, each in its own process: the median is reported.
QUICK_S = 1.0


def _run_child(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(counts: list[int], plain: bool = False, queries: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows (count, query, seconds, hits, transferred, rss_added, load_s) for each size and query."""
    from mlm_export.stac.local_api import start_local_api

    rows = []
    with start_local_api(computed_queryables=not plain) as api:
        for count in counts:
            collection = f"generated-{count}"
            load_s = load(api, collection, count)
            for name in queries or list(QUERIES):
                command = [sys.executable, __file__, "--child", api.url, collection, json.dumps(QUERIES[name])]
                results = [_run_child(command)]
                if results[0]["seconds"] < QUICK_S:  # a query of ~0.1 s: the median of three processes
                    results += [_run_child(command) for _ in range(2)]
                result = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
                rows.append({"count": count, "query": name, "load_s": load_s, **result})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| N | query | time | hits | Items sent | peak RSS added |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['count']} | {row['query']} | {row['seconds']:.3f} s | {row['hits']} | "
                     f"{row['transferred']} | {row['rss_added'] / 2**20:.1f} MiB |")  # fmt: skip
    loads = {row["count"]: row["load_s"] for row in rows}
    lines.append("")
    lines += [f"load of {count} Items (pypgstac, with the computed indexes): {s:.1f} s" for count, s in loads.items()]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000", help="catalog sizes, comma-separated")
    parser.add_argument("--plain", action="store_true", help="a pgstac server without the computed filters")
    parser.add_argument("--queries", nargs="+", choices=sorted(QUERIES), help="only these queries")
    arguments = parser.parse_args()
    counts = [int(c) for c in arguments.counts.split(",")]
    print(table(measure(counts, arguments.plain, arguments.queries)))


if __name__ == "__main__":
    main()
