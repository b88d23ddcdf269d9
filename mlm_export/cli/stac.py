"""``mlm-export search``, ``publish`` and ``serve-api``: find models, publish them to a STAC API, run one locally."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from mlm_export.errors import ConfigurationError

EXIT_OK = 0
#: Skipped ids printed by ``publish``.
_SHOWN_SKIPPED = 20


def _headers(values: list[str] | None) -> dict[str, str]:
    """``--header 'Name: value'`` options as a dict (values are never printed)."""
    headers = {}
    for text in values or []:
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise ConfigurationError(
                f"--header {name.strip() or text[:20]!r}...: expected 'Name: value'.",
                hint="Write e.g. --header 'Authorization: Bearer ...' (or set $MLM_EXPORT_STAC_TOKEN).",
            )
        headers[name.strip()] = value.strip()
    return headers


def _cmd_search(args: argparse.Namespace) -> int:
    from mlm_export.stac.entries import is_url
    from mlm_export.stac.search import format_hits, search

    source: Any = args.source[0] if len(args.source) == 1 else args.source
    remote = isinstance(source, str) and is_url(source)
    hits = search(
        source,
        bbox=args.bbox,
        datetime=args.datetime,
        tasks=args.tasks,
        bands=args.bands,
        framework=args.framework,
        input_channels=args.input_channels,
        filter=args.filter,
        limit=args.limit,
        collections=args.collections if remote else None,
        headers=(_headers(args.header) or None) if remote else None,
        max_pages=args.max_pages,
        max_items=args.max_items,
        max_time=args.max_time,
        freshness=args.freshness,
    )
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
    else:
        print(format_hits(hits))
    return EXIT_OK


def _cmd_publish(args: argparse.Namespace) -> int:
    from mlm_export.stac.publish import publish

    result = publish(
        args.items,
        args.to,
        args.collection,
        if_exists=args.if_exists,
        headers=_headers(args.header),
        href_base=args.href_base,
        upload_to=args.upload_to,
        schema_dir=args.schema_dir,
        progress=False if args.no_progress else None,
    )
    created = " (created)" if result.collection_created else ""
    print(f"published {len(result.published)} item(s) to {result.url}/collections/{result.collection_id}{created}")
    if result.skipped:
        shown = ", ".join(result.skipped[:_SHOWN_SKIPPED])
        more = f" and {len(result.skipped) - _SHOWN_SKIPPED} more" if len(result.skipped) > _SHOWN_SKIPPED else ""
        print(f"  skipped {len(result.skipped)} already there: {shown}{more}")
    return EXIT_OK


def _cmd_serve_api(args: argparse.Namespace) -> int:
    from mlm_export.stac.local_api import start_local_api

    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    with start_local_api(args.data_dir, port=args.port, python=args.python) as api:
        print(f"STAC API (stac-fastapi-pgstac, Transactions on) at {api.url}", flush=True)
        print(f"  PostgreSQL: {api.dsn} (password in {api.password_file}); data in {api.directory}; Ctrl-C stops "
              "both", flush=True)  # fmt: skip
        if args.url_file:
            with open(args.url_file, "w", encoding="utf-8") as handle:
                handle.write(api.url + "\n")
        while not stop.wait(0.5):
            if api.server is not None and api.server.poll() is not None:
                print(f"error: the server exited with {api.server.returncode}", file=sys.stderr)
                return 1
    return EXIT_OK


def _add_search(commands: Any) -> None:
    search = commands.add_parser(
        "search",
        help="find the models that fit your data, most specific first (local catalog or STAC API)",
        description="List the models of a catalog directory, of Item files or of a STAC API (URL) that match every "
        "given criterion, ranked by specificity (smallest footprint containing the box, tightest time range, exact "
        "band set). Both backends apply the same rules.",
    )
    search.add_argument("source", nargs="+", metavar="SOURCE", help="catalog DIR, collection.json, Item files, or URL")
    search.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="area of your data (WGS84)")
    search.add_argument("--datetime", help="instant or START/END interval of your data ('..' = open end)")
    search.add_argument(
        "--task", "--tasks", dest="tasks", nargs="+", metavar="TASK",
        help="MLM task(s) the model must answer, e.g. semantic-segmentation (generic tasks match specific ones)",
    )  # fmt: skip
    search.add_argument("--bands", nargs="+", metavar="BAND", help="band names your data has, e.g. B02 B03 B04 B08")
    search.add_argument("--framework", help="framework name (case-insensitive)")
    search.add_argument("--input-channels", type=int, metavar="N", help="number of channels of your input")
    search.add_argument("--filter", metavar="CQL2", help="CQL2 text or JSON on any Item field")
    search.add_argument("--limit", type=int, metavar="N", help="print at most N hits (after ranking)")
    search.add_argument("--collections", nargs="+", metavar="ID", help="STAC API: search these collections only")
    search.add_argument("--header", action="append", metavar="'NAME: VALUE'",
                        help="STAC API: HTTP header, sent to the API's origin only")  # fmt: skip
    search.add_argument("--max-pages", type=int, metavar="N", help="STAC API: read at most N pages (default 200)")
    search.add_argument("--max-items", type=int, metavar="N", help="STAC API: read at most N Items (default 20000)")
    search.add_argument("--max-time", type=float, metavar="S", help="STAC API: give up after S seconds (default 300)")
    search.add_argument("--freshness", choices=("full", "folders"), default="full",
                        help="folder of Items: stat every file (default) or only its folders and the candidates "
                        "(faster on big folders; misses in-place edits of other files)")  # fmt: skip
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.set_defaults(handler=_cmd_search)


def _add_publish(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish model Items to a STAC API (Transactions extension)",
        description="Stream the Items to the API 100 at a time: check their ids, validate them, and load them in "
        "bulk; the Collection is created when missing (extent and MLM summaries). A chunk is sent only once all its "
        "Items passed; an error leaves the chunks before it stored. Local artifact hrefs need --href-base (their "
        "public URL) or --upload-to.",
    )
    publish.add_argument(
        "items", nargs="+", metavar="DIR|catalog.json|ITEM",
        help="folder of Item files (walked; other JSON skipped), catalog (collection.json/catalog.json or its "
        "folder) or model Item JSON file(s)",
    )  # fmt: skip
    publish.add_argument("--to", required=True, metavar="URL", help="root URL of the STAC API")
    publish.add_argument("--collection", required=True, metavar="ID", help="Collection id (created when missing)")
    publish.add_argument("--if-exists", choices=("error", "skip", "replace"), default="error",
                         help="an Item id already there: error (default), skip or replace")  # fmt: skip
    publish.add_argument(
        "--header", action="append", metavar="'NAME: VALUE'",
        help="HTTP header, e.g. 'Authorization: Bearer ...' (or set $MLM_EXPORT_STAC_TOKEN); never printed",
    )  # fmt: skip
    publish.add_argument(
        "--href-base",
        metavar="URL",
        help="public URL of the directory the Item files are in (of the catalog directory for Items of a catalog)",
    )
    publish.add_argument("--upload-to", metavar="URL", help="copy the artifacts to s3://bucket/prefix or file:///dir")
    publish.add_argument("--schema-dir", help="offline schema directory")
    publish.add_argument("-q", "--quiet", "--no-progress", dest="no_progress", action="store_true",
                         help="no progress bar (shown on a terminal: Items and Items/s)")  # fmt: skip
    publish.set_defaults(handler=_cmd_publish)


def _add_serve_api(commands: Any) -> None:
    serve = commands.add_parser(
        "serve-api",
        help="run a local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac) on 127.0.0.1 until Ctrl-C",
        description="Start PostgreSQL 15 + PostGIS in DATA_DIR (a temporary directory by default), migrate it with "
        "pypgstac and serve it with stac-fastapi-pgstac (Transactions on) on 127.0.0.1.",
    )
    serve.add_argument("--data-dir", help="keep the database here (reused next time); default: temporary")
    serve.add_argument("--port", type=int, help="API port (default: a free one)")
    serve.add_argument("--python", default=os.environ.get("MLM_EXPORT_API_PYTHON"),
                       help="interpreter with stac-fastapi-pgstac (default: this one)")  # fmt: skip
    serve.add_argument("--url-file", help="write the API URL to this file once it answers")
    serve.set_defaults(handler=_cmd_serve_api)


def add_parsers(commands: Any) -> None:
    """Register ``search``, ``publish`` and ``serve-api`` on the CLI's subparsers."""
    _add_search(commands)
    _add_publish(commands)
    _add_serve_api(commands)
