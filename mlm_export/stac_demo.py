"""The README's second job: the demo model through a local STAC API (``python -m mlm_export.stac_demo``).

Starts the local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac on 127.0.0.1, see
:mod:`mlm_export.stac.local_api`) unless ``--api URL`` names one, exports the demo model (``make demo``'s job),
publishes its Item, finds it again with a search through pystac-client, reads the Item back from the API, loads the
model from that Item (checksum verified) and runs ``check_item`` on it. Everything started is stopped at the end.
The artifacts are served over HTTP on 127.0.0.1 while the demo runs (the published hrefs are ``http://`` URLs,
``href_base``), so loading goes the way a published model's does: downloaded into the verified cache. A remote Item
may not name local files, so ``file://`` hrefs would be refused; ``upload_to=`` puts them in object storage instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from mlm_export.errors import MLMExportError

COLLECTION_ID = "demo-models"


@contextlib.contextmanager
def _served(directory: Path) -> Iterator[str]:
    """``directory`` served read-only over HTTP on 127.0.0.1 (a free port) until the block ends; its URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, name="mlm-export-demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def _api(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url.rstrip("/")
        return
    from mlm_export.stac.local_api import start_local_api

    with start_local_api() as api:
        print(f"local STAC API: {api.url}")
        yield api.url


def run(output: Path, api_url: str | None = None) -> str:
    """Export, publish, search, load and check the demo model; returns the API URL of its Item."""
    from mlm_export import check_item, load_model
    from mlm_export.demo import SENTINEL2_BANDS, build_demo_model
    from mlm_export.demo import run as export_demo
    from mlm_export.stac.publish import publish
    from mlm_export.stac.search import format_hits, search

    item_path = export_demo(output)
    with _api(api_url) as url, _served(item_path.parent) as artifacts:
        print(f"artifacts:   {artifacts}")
        result = publish([item_path], url, COLLECTION_ID, if_exists="replace", href_base=artifacts)
        print(f"published:   {', '.join(result.published)} -> {url}/collections/{COLLECTION_ID}")
        hits = search(url, bbox=[6.0, 46.0, 7.0, 47.0], bands=SENTINEL2_BANDS, tasks=["classification"],
                      collections=[COLLECTION_ID])  # fmt: skip
        print(format_hits(hits))
        if not hits or hits[0].href is None:
            raise SystemExit("the published model was not found")
        with urllib.request.urlopen(hits[0].href, timeout=30) as response:
            item = json.load(response)
        model = load_model(item, model_class=build_demo_model)
        print(f"load_model:  {type(model).__name__} from {hits[0].href}")
        checked = check_item(item, model_class=build_demo_model)
        print(f"check_item:  {'outputs match' if checked.ok else 'MISMATCH'} (Item read from the STAC API)")
        if not checked.ok:
            raise SystemExit(1)
        return hits[0].href


def main(argv: Sequence[str] | None = None) -> int:
    """Run the STAC API demo; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mlm_export.stac_demo", description=__doc__)
    parser.add_argument("--output", default="demo-output", help="directory for the item and its artifacts")
    parser.add_argument("--api", help="use this STAC API instead of starting a local one")
    args = parser.parse_args(argv)
    try:
        run(Path(args.output), args.api)
    except MLMExportError as exc:
        from mlm_export.demo import report

        return report(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
