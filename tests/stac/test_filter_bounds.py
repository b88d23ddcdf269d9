"""A search filter's size and nesting are bounded before cql2 sees it (cql2 segfaults or eats GBs on these).

Each hostile filter runs in a child process under a 3 GB address-space limit, so a regression that crashes or
blows up fails the test (exit code and message asserted) instead of killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from mlm_export.errors import ConfigurationError
from mlm_export.stac.filter_bounds import MAX_FILTER_NESTING, MAX_FILTER_NOTS, check_filter
from mlm_export.stac.search import search

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
    from mlm_export.errors import ConfigurationError
    from mlm_export.stac.search import search
    kind, text = sys.argv[1], sys.stdin.read()
    value = json.loads(text) if kind == "dict" else text
    start = time.perf_counter()
    try:
        search([], filter=value)
    except ConfigurationError as exc:
        print(f"{time.perf_counter() - start:.4f} {exc}")
    else:
        print("accepted")
    """
)


def _not_json(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"op": "=", "args": [{"property": "a"}, 1]}
    for _ in range(levels):
        node = {"op": "not", "args": [node]}
    return node


def _and_json(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"op": "=", "args": [{"property": "a"}, 1]}
    for _ in range(levels):
        node = {"op": "and", "args": [node, {"op": "=", "args": [{"property": "b"}, 2]}]}
    return node


HOSTILE = {
    # name: (kind, filter text, the bound named)
    "100k parentheses": ("text", "(" * 100_000 + "a = 1" + ")" * 100_000, "MAX_FILTER_CHARS"),
    "20k parentheses": ("text", "(" * 20_000 + "a = 1" + ")" * 20_000, "MAX_FILTER_NESTING"),
    "50k NOTs": ("text", "NOT " * 50_000 + "a = 1", "MAX_FILTER_CHARS"),
    "5k NOTs": ("text", "NOT " * 5_000 + "a = 1", "MAX_FILTER_NOTS"),
    "2k NOTs side by side": ("text", " AND ".join(["NOT a = 1"] * 2_000), "MAX_FILTER_TERMS"),
    "30k ORs": ("text", " OR ".join(f"a={i % 10}" for i in range(30_000)), "MAX_FILTER_CHARS"),
    "2k ORs": ("text", " OR ".join("a=1" for _ in range(2_000)), "MAX_FILTER_TERMS"),
    "JSON 250 NOT levels (dict)": ("dict", json.dumps(_not_json(250)), "MAX_FILTER_NOTS"),
    "JSON 250 AND levels (dict)": ("dict", json.dumps(_and_json(250)), "MAX_FILTER_NESTING"),
    "JSON 20k values (dict)": ("dict", json.dumps({"op": "or", "args": [_and_json(0)] * 2_000}), "MAX_FILTER_NODES"),
    "JSON 250 levels (text)": ("text", json.dumps(_not_json(250)), "MAX_FILTER_NESTING"),
    "JSON 12 NOT levels": ("dict", json.dumps(_not_json(12)), "MAX_FILTER_NOTS"),
    "12 NOTs in groups": (
        "text",
        "a = 1" + "".join(f" AND NOT (b = {i}" for i in range(12)) + ")" * 12,
        "MAX_FILTER_NOTS",
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_filter_is_refused_in_milliseconds_without_crashing(name: str) -> None:
    kind, text, bound = HOSTILE[name]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind], input=text, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"  # 139 was cql2's segfault
    seconds, message = done.stdout.split(" ", 1)
    assert message.startswith("filter: it has") and f"({bound})" in message, message
    assert float(seconds) < 0.5


def test_filters_within_the_bounds_still_work(tmp_path: Any) -> None:
    nested = "(" * (MAX_FILTER_NESTING - 1) + "a = 1" + ")" * (MAX_FILTER_NESTING - 1)
    nots = "NOT " * MAX_FILTER_NOTS + "a = 1"
    flat = " AND ".join(f"NOT a = {i}" for i in range(100))  # many NOTs side by side are cheap and fine
    quoted = "\"mlm:name\" = 'NOT NOT NOT NOT NOT NOT NOT NOT NOT (((('"  # words and brackets in strings don't count
    for text in (nested, nots, flat, quoted, json.dumps(_not_json(MAX_FILTER_NOTS))):
        assert check_filter(text) is not None
        start = time.perf_counter()
        assert search([], filter=text) == []
        assert time.perf_counter() - start < 5
    with pytest.raises(ConfigurationError, match="expected CQL2 text or a cql2-json dict"):
        search([], filter=5)  # type: ignore[arg-type]
