"""``mlm-export export`` flags for provenance and runtime: container, version, references, batch size.

Kept apart from :mod:`mlm_export.cli` (two lines there register and read them).

.. versionadded:: 0.2
"""

from __future__ import annotations

import argparse
import re
from typing import Any

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def memory_size(text: str) -> int:
    """Bytes from ``"8GiB"``, ``"512MB"``, ``"1e9"``-free integers such as ``"1073741824"`` (argparse type)."""
    match = _SIZE.match(text)
    unit = match[2].lower() if match else None
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size (e.g. 8GiB, 512MB or a number of bytes)")
    value = int(float(match[1]) * _UNITS[unit])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 bytes")
    return value


def add_provenance_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the provenance and runtime flags to the ``export`` parser.

    ``--container``, ``--source-code``, ``--version``, ``--previous``, ``--doi``, ``--citation``, ``--publication``,
    ``--suggest-batch-size`` and ``--memory-budget``.
    """
    group = parser.add_argument_group("provenance and runtime")
    group.add_argument("--container", metavar="IMAGE", help="inference image, registry/name:tag or @sha256:digest")
    group.add_argument(
        "--source-code", metavar="URL",
        help="http(s) URL of the model's code (repository at a commit, or file); replaces the detected one",
    )  # fmt: skip
    group.add_argument("--version", dest="item_version", metavar="VERSION", help="version of this Item")
    group.add_argument("--previous", metavar="ITEM_JSON", help="the Item this one supersedes (linked both ways)")
    group.add_argument("--doi", help="DOI of the model (sci:doi)")
    group.add_argument("--citation", help="how to cite the model (sci:citation)")
    group.add_argument(
        "--publication", action="append", metavar="DOI", help="DOI of a paper describing the model (repeatable)"
    )
    group.add_argument(
        "--suggest-batch-size", action="store_true", help="time forward passes at batch 1, 2, 4... (takes seconds)"
    )
    group.add_argument(
        "--memory-budget", type=memory_size, metavar="SIZE", help="memory the batch-size search may use, e.g. 8GiB"
    )


def provenance_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``export_item`` keyword arguments of those flags (only the ones given)."""
    options = {
        "container": args.container,
        "source_code": args.source_code,
        "version": args.item_version,
        "previous": args.previous,
        "doi": args.doi,
        "citation": args.citation,
        "publications": args.publication,
        "memory_budget": args.memory_budget,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.suggest_batch_size:
        options["suggest_batch_size"] = True
    return options


__all__ = ["add_provenance_arguments", "memory_size", "provenance_options"]
