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
    add_download_options(get)
    get.set_defaults(handler=_cmd_get)


def add_download_options(parser: argparse.ArgumentParser) -> None:
    """``--max-download-size`` / ``--download-timeout``: the bounds on every download (get, check of a URL Item)."""
    parser.add_argument(
        "--max-download-size",
        metavar="SIZE",
        help="largest download, e.g. 8GB or 512MiB (default: $MLM_EXPORT_MAX_DOWNLOAD_SIZE or 16GiB; 0: no cap)",
    )
    parser.add_argument(
        "--download-timeout", type=float, metavar="SECONDS", help="time limit of each whole download (default: none)"
    )


def download_options(args: argparse.Namespace) -> dict[str, Any]:
    """max_download_size / download_timeout from --max-download-size / --download-timeout (0: no limit)."""
    options: dict[str, Any] = {}
    if args.max_download_size is not None:
        options["max_download_size"] = args.max_download_size
    if args.download_timeout is not None:
        options["download_timeout"] = args.download_timeout if args.download_timeout > 0 else None
    return options


def _cmd_get(args: argparse.Namespace) -> int:
    from mlm_export.download_limits import DownloadLimits
    from mlm_export.offline import download_item

    path = download_item(
        args.url,
        args.output,
        overwrite=args.overwrite,
        cache_dir=args.cache_dir,
        progress=False if args.no_progress else None,
        limits=DownloadLimits.of(**download_options(args)),
    )
    print(path)
    return 0
