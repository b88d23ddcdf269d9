"""The main job of the README: export a demo model to a validated Item (``python -m mlm_export.demo``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlm_export.errors import MLMExportError


def validate_examples(directory: Path) -> int:
    """Validate the official MLM example items and print a summary; returns the number of invalid ones."""
    from mlm_export.stac.validate import validate_item

    invalid = 0
    for path in sorted(directory.glob("*.json")):
        report = validate_item(path)
        invalid += not report.valid
        print(f"{'valid  ' if report.valid else 'INVALID'} {path.name}")
        for problem in report.problems:
            print(f"    {problem}")
    return invalid


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mlm_export.demo", description=__doc__)
    parser.add_argument("--output", default="demo-output", help="directory for the item and its artifacts")
    parser.add_argument(
        "--examples", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "mlm-examples")
    )
    args = parser.parse_args(argv)
    try:
        invalid = validate_examples(Path(args.examples))
    except MLMExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{invalid} invalid example item(s)")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
