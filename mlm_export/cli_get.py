"""``mlm-export get ITEM_URL -o DIR``: download an Item and its verified artifacts for offline use."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    """Register the ``get`` subcommand on the CLI's subparsers."""
    get = commands.add_parser(
        "get",
        help="download an Item and its artifacts (size and checksum verified) for offline use",
        description="Fetch the Item at ITEM_URL (http(s):// or s3://), download every asset that has a "
        "file:checksum through the verified artifact cache, and write DIR/<id>.json with relative hrefs.",
    )
    get.add_argument("url", metavar="ITEM_URL", help="URL of the Item (a STAC API item or a static Item JSON)")
    get.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write into (created)")
    get.add_argument("--overwrite", action="store_true", help="replace files in DIR that hold other bytes")
    get.add_argument("--cache-dir", help="artifact cache (default: $MLM_EXPORT_CACHE_DIR or the user cache)")
    get.add_argument("--no-progress", action="store_true", help="no progress bars")
    get.set_defaults(handler=_cmd_get)


def _cmd_get(args: argparse.Namespace) -> int:
    from mlm_export.transfer import download_item

    path = download_item(
        args.url,
        args.output,
        overwrite=args.overwrite,
        cache_dir=args.cache_dir,
        progress=False if args.no_progress else None,
    )
    print(path)
    return 0
