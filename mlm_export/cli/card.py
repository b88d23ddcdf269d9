"""``mlm-export card``: render an Item as a model card (HTML page or Markdown with its map SVG beside it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK, EXIT_INVALID = 0, 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``card`` subcommand to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "card",
        help="render an Item as a model card (self-contained HTML or Markdown)",
        description="Render an MLM Item as a model card: -o card.html writes one self-contained page (map, "
        "inputs, outputs, runtime, artifacts, provenance, validation); -o card.md writes a README-style card and "
        "its map as card-map.svg beside it. Exit 1 when the Item is invalid, unless --allow-invalid; exit 0 with a "
        "warning when validation could not run (no schema reachable: the card says 'not checked').",
    )
    parser.add_argument("item", metavar="ITEM", help="STAC Item (or Collection) JSON file")
    parser.add_argument("-o", "--output", required=True, metavar="CARD", help="card.html or card.md")
    parser.add_argument("--allow-invalid", action="store_true", help="exit 0 even when the Item does not validate")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-validate", action="store_true", help="do not validate (the card says 'not checked')")
    parser.add_argument("--schema-dir", help="offline schema directory")
    parser.add_argument(
        "--allow-outside", action="append", default=[], metavar="DIR",
        help="directory besides the item's own that its local hrefs may point into (repeatable)",
    )  # fmt: skip
    parser.set_defaults(handler=run_card)
    return parser


def run_card(args: argparse.Namespace) -> int:
    """Write the card; print where, and the validation problems when the Item is invalid."""
    from mlm_export.card import write_card

    written = write_card(
        args.item,
        args.output,
        overwrite=args.overwrite,
        schema_dir=args.schema_dir,
        validate=not args.no_validate,
        allow_outside=args.allow_outside,
    )
    extra = f" and {written.map_path}" if written.map_path else ""
    print(f"wrote {written.path}{extra} ({written.card.validation})")
    if written.valid or args.no_validate:
        return EXIT_OK
    if written.card.validation == "not checked":  # could not check is not invalid: the card is written, say why
        for note in written.card.notes:
            print(f"warning: {note}", file=sys.stderr)
        print(
            "warning: the Item was not validated (the card says 'not checked'); point --schema-dir or "
            "MLM_EXPORT_SCHEMA_DIR at a schema directory, or let it reach the schema host, and run card again.",
            file=sys.stderr,
        )
        return EXIT_OK
    for note in written.card.notes:
        print(f"  note: {note}")
    for problem in written.card.problems:
        print(f"  - {problem}")
    if args.allow_invalid:
        return EXIT_OK
    print("error: the Item is not valid; the card lists its problems.", file=sys.stderr)
    print("hint: fix the Item, or pass --allow-invalid to accept the card anyway.", file=sys.stderr)
    return EXIT_INVALID


def write_catalog_cards(collection_path: str, schema_dir: str | None = None, allow_outside: Any = ()) -> None:
    """``catalog --cards``: one HTML card beside each Item of the written catalog, plus ``index.html``."""
    from mlm_export.card.catalog import write_catalog_cards as write

    index = write(collection_path, overwrite=True, schema_dir=schema_dir, allow_outside=allow_outside)
    print(f"wrote {index} and one card per model")
