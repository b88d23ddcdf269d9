"""The embedded search backend at scale: a folder of N generated Items and the catalog built from it, with the index.

Run: ``.venv/bin/python benchmarks/bench_catalog_embedded.py --counts 1000,5000 [--catalog] [--baseline]``.

For each N (Items from :mod:`catalog_items`, 20 of them rare at every size): the time to write the folder, the
index build (the first search), then each query in a fresh process (time of the search, freshness check included,
and peak RSS net of the interpreter with mlm-export imported; on the folder with ``freshness="full"`` and
``"folders"``): ``framework=onnx``, ``bands=[B02, B03, B04, B08]``, a bbox, and the rare queries (20 hits at every
size: bands, framework, channels, and the framework as a CQL2 ``filter``). ``--catalog`` does the same on the catalog
that ``build_catalog`` writes from the folder (``validate=False``; its build time includes the index; above
:data:`BUILD_LIMIT` Items the same layout is made with hard links, and the first search builds the index);
``--baseline`` adds the search of before the index (every file read) for the rare framework query. Listing costs
are shown too: ``os.scandir`` of the folder, with a ``stat`` per file, and ``entries.folder_listing``.
Target (issue 25): a rare query < 1 s at 50k and <= 1.5x its 5k cost; broad queries in proportion to their hits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from catalog_items import RARE_BANDS, RARE_CHANNELS, RARE_FRAMEWORK, write_folder  # noqa: E402

#: Catalogs up to this size are written by build_catalog (about 200-350 Items/s on a loaded 2-core machine);
#: larger ones are laid out the same way with hard links.
BUILD_LIMIT = 50_000
QUERIES: dict[str, dict[str, Any]] = {
    "framework=onnx": {"framework": "onnx"},
    "bands=[B02,B03,B04,B08]": {"bands": ["B02", "B03", "B04", "B08"]},
    "bbox=[10,40,12,42]": {"bbox": [10.0, 40.0, 12.0, 42.0]},
    "rare bands": {"bands": RARE_BANDS},
    "rare framework": {"framework": RARE_FRAMEWORK},
    "rare channels": {"input_channels": RARE_CHANNELS},
    "rare framework (filter)": {"filter": f"\"mlm:framework\" = '{RARE_FRAMEWORK}'"},
}


def _peak_mib() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss would include the parent's peak, kept across fork + exec)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(source: str, query: dict[str, Any], baseline: bool) -> dict[str, Any]:
    """Run one search in this process: seconds, hits, peak RSS net of the imports (MiB)."""
    from mlm_export.stac.entries import entries_of
    from mlm_export.stac.matching import match, parse_query
    from mlm_export.stac.search import rank, search

    idle = _peak_mib()
    start = time.perf_counter()
    if baseline:  # every file read and matched: the search of before the index
        parsed = parse_query(**query)
        hits = rank([h for e in entries_of(source) if (h := match(e, parsed)) is not None])
    else:
        hits = search(source, **query)
    return {"s": time.perf_counter() - start, "hits": len(hits), "rss_mib": _peak_mib() - idle, "peak_mib": _peak_mib()}


def _child(source: Path, query: dict[str, Any], baseline: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", str(source), json.dumps(query)] + (["--baseline"] if baseline else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def listing_costs(folder: Path) -> dict[str, float]:
    from mlm_export.stac.entries import folder_listing

    costs = {}
    start = time.perf_counter()
    with os.scandir(folder) as scan:
        names = [entry.name for entry in scan]
    costs["scandir_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with os.scandir(folder) as scan:
        stats = [entry.stat() for entry in scan]
    costs["scandir_stat_s"] = time.perf_counter() - start
    start = time.perf_counter()
    listed = folder_listing(folder)
    costs["folder_listing_s"] = time.perf_counter() - start
    hidden = sum(name.startswith(".") for name in names)  # the index (and its journal) beside the Items
    assert len(listed) == len(stats) - hidden == len(names) - hidden
    return costs


def linked_catalog(folder: Path, cat: Path) -> None:
    """A catalog in build_catalog's layout (``<id>/<id>.json`` hard links, collection.json) without its checks."""
    links = []
    for path in sorted(folder.glob("*.json")):
        (cat / path.stem).mkdir(parents=True, exist_ok=True)
        if not (cat / path.stem / path.name).exists():
            os.link(path, cat / path.stem / path.name)
        links.append({"rel": "item", "href": f"./{path.stem}/{path.name}", "type": "application/json"})
    collection = {"type": "Collection", "id": "bench", "stac_version": "1.1.0", "description": "generated",
                  "license": "other", "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                                 "temporal": {"interval": [[None, None]]}}, "links": links}  # fmt: skip
    (cat / "collection.json").write_text(json.dumps(collection))


def measure(count: int, workdir: Path, catalog: bool, baseline: bool) -> Iterator[tuple[str, str, float, str]]:
    """(N, source, what) rows: seconds, hits or extra, for one catalog size."""
    from mlm_export.stac.collection import build_catalog

    folder = workdir / f"items-{count}"
    start = time.perf_counter()
    if not folder.is_dir():
        write_folder(folder, count)
    yield (str(count), "folder", time.perf_counter() - start, "write the Items (generator)")
    build = _child(folder, {"framework": "no-such"})
    yield (str(count), "folder", build["s"], f"index build (first search), {build['rss_mib']:.0f} MiB")
    sources = [("folder", folder)]
    if catalog:
        cat = workdir / f"cat-{count}"
        if (cat / "collection.json").is_file():  # kept from an earlier run in --workdir
            build = _child(cat, {"framework": "no-such"})
            yield (str(count), "catalog", build["s"], "index refresh (catalog kept from an earlier run)")
        elif count <= BUILD_LIMIT:
            start = time.perf_counter()
            build_catalog(sorted(folder.glob("*.json")), cat, validate=False, overwrite=True)
            yield (str(count), "catalog", time.perf_counter() - start, "build_catalog (validate=False) + index")
        else:
            start = time.perf_counter()
            linked_catalog(folder, cat)
            yield (str(count), "catalog", time.perf_counter() - start, "catalog laid out as build_catalog's (links)")
            build = _child(cat, {"framework": "no-such"})
            yield (str(count), "catalog", build["s"], "index build (first search)")
        sources.append(("catalog", cat))
    for _ in range(2):  # the index keeps the folder's mtime once it is not racy (see index_folders)
        _child(folder, {"framework": "no-such", "freshness": "folders"})
    for kind, source in sources:
        for name, query in QUERIES.items():
            for freshness in ("full", "folders") if kind == "folder" else ("full",):
                result = _child(source, {**query, "freshness": freshness})
                yield (
                    str(count),
                    kind,
                    result["s"],
                    f"{name} [{freshness}]: {result['hits']} hits, peak RSS {result['peak_mib']:.0f} MiB "
                    f"(+{result['rss_mib']:.0f})",
                )
        if baseline:
            result = _child(source, QUERIES["rare framework"], baseline=True)
            yield (
                str(count),
                kind,
                result["s"],
                f"rare framework WITHOUT index: peak RSS {result['peak_mib']:.0f} MiB",
            )
    for what, seconds in listing_costs(folder).items():
        yield (str(count), "folder", seconds, what)


def rare_costs(counts: list[int], workdir: Path) -> dict[int, float]:
    """The slowest of the rare queries (20 hits) on a folder of each size, its index built first.

    Keys: N for ``freshness="full"`` (the default), -N for ``freshness="folders"``."""
    costs = {}
    for count in counts:
        folder = workdir / f"items-{count}"
        if not folder.is_dir():
            write_folder(folder, count)
        _child(folder, {"framework": "no-such"})  # the index
        rare = [name for name in QUERIES if name.startswith("rare")]
        costs[count] = max(_child(folder, QUERIES[name])["s"] for name in rare)
        for _ in range(2):
            _child(folder, {"framework": "no-such", "freshness": "folders"})
        costs[-count] = max(_child(folder, {**QUERIES[name], "freshness": "folders"})["s"] for name in rare)
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000", help="comma-separated catalog sizes")
    parser.add_argument("--catalog", action="store_true", help="also build a catalog and search it")
    parser.add_argument("--baseline", action="store_true", help="also the search without index (rare framework)")
    parser.add_argument("--workdir", type=Path, help="keep the generated folders here (reused when present)")
    parser.add_argument("--one", nargs=2, metavar=("SOURCE", "QUERY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], json.loads(args.one[1]), args.baseline)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    try:
        print("| N | source | seconds | what |\n|---|---|---|---|")
        for count in (int(c) for c in args.counts.split(",")):
            for row in measure(count, workdir, args.catalog, args.baseline):
                print(f"| {row[0]} | {row[1]} | {row[2]:.3f} | {row[3]} |", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
