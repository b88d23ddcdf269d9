"""Publishing a generated catalog folder to the local STAC API: Items/s and the client's peak RSS, by size.

Run: ``.venv/bin/python benchmarks/bench_catalog_publish.py [--counts 1000,5000] [--paths cli,library]``.

For each count, ``count`` Items from :func:`catalog_items.write_folder` are written to a folder once, then each
path publishes them into a fresh Collection of one local stac-fastapi-pgstac, in its own process (its peak RSS is
that process's ``ru_maxrss``):

- ``cli``: ``mlm-export publish FOLDER --to URL --collection ID --quiet`` (the folder walked; wall time of the
  process, start-up included).
- ``library``: :func:`mlm_export.stac.publish.publish` of a generator of the folder's paths (time of the call).

Each row also gives the CPU time per Item of the publishing process, of the API server (uvicorn) and of PostgreSQL
(all its processes, from /proc; "background": those that are not connections, e.g. autovacuum): on 2 cores, their
sum bounds the rate (1,000 Items/s needs it under 2 ms).

Targets (issue 25): >= 1,000 Items/s at 50k, and peak RSS at any count <= 1.2 x the RSS at the smallest count.
``--code DIR`` imports mlm_export from another checkout (a baseline); ``--files`` gives the CLI the Item files as
arguments instead of the folder (what an older CLI needs; beware the argument-list limit beyond ~30k).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_LIBRARY = """
import json, os, sys, time
from mlm_export.stac.publish import publish
folder, url, collection = sys.argv[1:4]
start = time.perf_counter()
result = publish((entry.path for entry in os.scandir(folder) if entry.name.endswith(".json")), url, collection,
                 progress=False)
print(json.dumps({"seconds": time.perf_counter() - start, "published": len(result.published)}))
"""


def _proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of process ``pid`` from /proc, with its reaped children's when ``children``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(api: Any) -> tuple[float, float, float]:
    """CPU seconds so far of the API server (uvicorn), of PostgreSQL (postmaster, its live and reaped children) and
    of PostgreSQL's processes other than the live connections (autovacuum, checkpointer, WAL writer...)."""
    postmaster = int((api.pgdata / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    postgres = background = _proc_cpu(postmaster, children=True)
    for child in children:
        try:
            used = _proc_cpu(int(child))
            connection = "127.0.0.1(" in Path(f"/proc/{child}/cmdline").read_text()
        except OSError:  # exited meanwhile (then counted in the postmaster's children's time)
            continue
        postgres += used
        background += 0.0 if connection else used
    return _proc_cpu(api.server.pid), postgres, background


def _popen_rss(command: list[str], code: Path) -> dict[str, Any]:
    """Run ``command``: its wall time, its own peak RSS (MiB, ``os.wait4``) and the JSON it printed last."""
    env = dict(os.environ, PYTHONPATH=str(code))
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True, cwd=code)  # code first
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        text, error = out.read(), err.read()
    if process.returncode:
        raise RuntimeError(f"{command[:5]} failed ({process.returncode}): {error[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    result: dict[str, Any] = {"wall_s": wall, "rss_mib": usage.ru_maxrss / 1024, "cpu_s": cpu}
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if lines:
        result.update(json.loads(lines[-1]))
    return result


def measure(
    counts: list[int], paths: list[str], code: Path = REPO, files: bool = False, computed: bool = True
) -> list[dict[str, Any]]:
    """One row per (count, path): Items/s and peak RSS of the publishing process."""
    sys.path.insert(0, str(HERE))
    from catalog_items import write_folder

    from mlm_export.stac.local_api import start_local_api

    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp,
        start_local_api(computed_queryables=computed) as api,
    ):
        for count in counts:
            folder = write_folder(Path(tmp) / f"items-{count}", count)
            for path in paths:
                collection = f"{path}-{count}"
                before = server_cpu(api)
                if path == "cli":
                    targets = sorted(str(p) for p in folder.glob("*.json")) if files else [str(folder)]
                    command = [sys.executable, "-m", "mlm_export", "publish", *targets, "--to", api.url,
                               "--collection", collection, "--no-progress"]  # fmt: skip
                    result = _popen_rss(command, code)
                    seconds = result["wall_s"]
                else:
                    command = [sys.executable, "-c", _LIBRARY, str(folder), api.url, collection]
                    result = _popen_rss(command, code)
                    seconds = result["seconds"]
                api_cpu, pg_cpu, pg_background = (b - a for b, a in zip(server_cpu(api), before, strict=True))
                cpu = {"client": result["cpu_s"], "api": api_cpu, "postgres": pg_cpu,
                       "postgres_background": pg_background}  # fmt: skip
                rows.append({"count": count, "path": path, "seconds": round(seconds, 2),
                             "items_per_s": round(count / seconds), "rss_mib": round(result["rss_mib"]),
                             "cpu_ms_per_item": {k: round(v * 1000 / count, 2) for k, v in cpu.items()}})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows``, with each path's RSS relative to its smallest count."""
    first = {}
    for row in rows:
        first.setdefault(row["path"], row["rss_mib"])
    lines = [
        "| path | Items | seconds | Items/s | peak RSS MiB | RSS vs smallest | CPU ms/Item: client, API, PostgreSQL "
        "(of it background) |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    lines += [f"| {r['path']} | {r['count']} | {r['seconds']} | {r['items_per_s']} | {r['rss_mib']} | "
              f"{r['rss_mib'] / first[r['path']]:.2f} | {_cpu_cell(r['cpu_ms_per_item'])} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def _cpu_cell(cpu: dict[str, float]) -> str:
    """``client, API, PostgreSQL (background)`` (older rows have no background figure)."""
    background = f" ({cpu['postgres_background']})" if "postgres_background" in cpu else ""
    return f"{cpu['client']}, {cpu['api']}, {cpu['postgres']}{background}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1000,5000", help="comma-separated catalog sizes")
    parser.add_argument("--paths", default="cli,library", help="comma-separated: cli, library")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose mlm_export is imported")
    parser.add_argument("--files", action="store_true", help="give the CLI the files instead of the folder")
    parser.add_argument("--no-computed", action="store_true", help="a server without mlm-export's computed filters")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows = measure(counts, args.paths.split(","), args.code.resolve(), args.files, not args.no_computed)
    print(table(rows))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
