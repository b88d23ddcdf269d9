"""CQL2 filters in the search index (issue 25): the SQL admits every Item cql2 matches, narrows what it translates,
and a filter search reads only its candidates."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_index import _count_reads, _item, _settled, _with_index, _without_index

from mlm_export.errors import ConfigurationError
from mlm_export.stac import index
from mlm_export.stac.index_filter import filter_condition, property_rows
from mlm_export.stac.matching import matches_filter, parse_filter
from mlm_export.stac.search import search

#: Property values of every kind cql2 meets: integers (one beyond 2**53, where doubles round), floats, strings
#: (numeric-looking, a timestamp, a long one), booleans, null, arrays, objects; None: the property is missing.
VALUES: list[Any] = [None, 0, 5, -3, 5.0, 2.5, 2**60, 2**60 - 1, 1e300, "5", "abc", "ResNet", "UNet",
                     "2024-01-01T00:00:00Z", "x" * 300, True, False, [1, 2], {"a": 1}, "null"]  # fmt: skip
LITERALS: list[Any] = [5, 2.5, 0, 2**60 - 1, "abc", "ResNet", "5", True, False]
COMPARISONS = ["=", "<", "<=", ">", ">="]


def _items() -> list[dict[str, Any]]:
    """One Item per value of ``p`` (and of ``q``, shifted), plus two holding ``p`` as a top-level member."""
    items = []
    for number, (p, q) in enumerate(zip(VALUES, VALUES[3:] + VALUES[:3], strict=True)):
        properties = {"datetime": "2024-01-01T00:00:00Z"}
        for name, value in (("p", p), ("q", q)):
            if value != "null" and value is not None:
                properties[name] = value
            elif value == "null":
                properties[name] = None
        items.append({"type": "Feature", "stac_version": "1.1.0", "id": f"i{number}", "geometry": None,
                      "properties": properties, "links": [], "assets": {}})  # fmt: skip
    # "p" as a top-level member only, and at both levels: cql2 reads the top-level one
    items.append({**items[2], "id": "top", "p": 5, "properties": {"datetime": "2024-01-01T00:00:00Z"}})
    items.append({**items[2], "id": "both", "p": "abc", "properties": {**items[2]["properties"], "p": 5}})
    return items


def _filters() -> list[dict[str, Any]]:
    simple = [{"op": op, "args": [{"property": name}, literal]}
              for op, name, literal in itertools.product(COMPARISONS, ("p", "q"), LITERALS)]  # fmt: skip
    simple += [{"op": "<", "args": [3, {"property": "p"}]}, {"op": ">=", "args": ["b", {"property": "p"}]}]
    simple += [{"op": "between", "args": [{"property": "p"}, 0, 5]},
               {"op": "between", "args": [{"property": "p"}, 2**60 - 1, 2**61]},
               {"op": "in", "args": [{"property": "p"}, ["abc", "UNet", 5]]},
               {"op": "in", "args": [{"property": "p"}, [True]]}]  # fmt: skip
    pairs = zip(simple[::7], simple[3::7], strict=False)
    combined = [{"op": op, "args": [a, b]} for a, b in pairs for op in ("and", "or")]
    untranslated = [{"op": "not", "args": [simple[0]]}, {"op": "<>", "args": [{"property": "p"}, 5]},
                    {"op": "isNull", "args": [{"property": "p"}]},
                    {"op": "and", "args": [{"op": "isNull", "args": [{"property": "q"}]}, simple[1]]},
                    {"op": "or", "args": [{"op": "isNull", "args": [{"property": "q"}]}, simple[1]]},
                    {"op": "=", "args": [{"property": "id"}, "i3"]},
                    {"op": "=", "args": [{"property": "properties.p"}, 5]},
                    {"op": "like", "args": [{"property": "p"}, "R%"]}]  # fmt: skip
    return simple + combined + untranslated


def _admitted(items: list[dict[str, Any]], expression: dict[str, Any]) -> set[str] | None:
    """The ids the index's SQL admits for ``expression`` (None: it narrows nothing), in an in-memory index."""
    condition = filter_condition(expression)
    if condition is None:
        return None
    connection = sqlite3.connect(":memory:")
    connection.executescript(index._SCHEMA)  # the index's own tables
    for number, item in enumerate(items):
        connection.execute("INSERT INTO files(id, rel, racy, item_id, unsure, nbands) VALUES (?, ?, 0, ?, 0, 0)",
                           (number, item["id"], item["id"]))  # fmt: skip
        connection.executemany("INSERT INTO props VALUES (?, ?, ?, ?)", [(number, *r) for r in property_rows(item)])
    sql, parameters = condition
    return {row[0] for row in connection.execute(f"SELECT item_id FROM files WHERE {sql}", parameters)}


def _outcome(parsed: Any, item: dict[str, Any]) -> bool | None:
    """Whether the Item matches; None when cql2 fails on it (a property holding an object, compared)."""
    try:
        return matches_filter(parsed, item)
    except ConfigurationError:
        return None


def test_the_sql_admits_every_item_cql2_matches_and_narrows_what_it_translates() -> None:
    items = _items()
    narrowed = 0
    for expression in _filters():
        parsed = parse_filter(expression)
        assert parsed is not None
        outcomes = {item["id"]: _outcome(parsed, item) for item in items}
        matched = {i for i, outcome in outcomes.items() if outcome}
        failing = {i for i, outcome in outcomes.items() if outcome is None}
        admitted = _admitted(items, parsed.to_json())
        if admitted is None:
            continue
        assert matched <= admitted, (expression, sorted(matched - admitted))
        if expression["op"] not in ("and", "or"):  # the search still meets cql2's error (another criterion may not)
            assert failing <= admitted, (expression, sorted(failing - admitted))
        narrowed += len(admitted) < len(items)
    assert narrowed >= 100  # most filters narrow: the test cannot pass with a translation that admits everything


@pytest.mark.parametrize("expression", [
    {"op": "not", "args": [{"op": "=", "args": [{"property": "p"}, 5]}]},
    {"op": "<>", "args": [{"property": "p"}, 5]},
    {"op": "isNull", "args": [{"property": "p"}]},
    {"op": "or", "args": [{"op": "isNull", "args": [{"property": "q"}]}, {"op": "=", "args": [{"property": "p"}, 5]}]},
    {"op": "=", "args": [{"property": "id"}, "i3"]},
    {"op": "=", "args": [{"property": "mlm:input.0.input.shape.1"}, 4]},
    {"op": "a_contains", "args": [{"property": "mlm:tasks"}, ["classification"]]},
    {"op": ">", "args": [{"property": "datetime"}, {"timestamp": "2020-01-01T00:00:00Z"}]},
])  # fmt: skip
def test_what_is_not_translated_narrows_nothing(expression: dict[str, Any]) -> None:
    assert filter_condition(expression) is None


def test_an_and_keeps_its_translated_part() -> None:
    untranslated = {"op": "isNull", "args": [{"property": "q"}]}
    translated = {"op": "=", "args": [{"property": "p"}, 5]}
    alone = filter_condition(translated)
    assert alone is not None
    assert filter_condition({"op": "and", "args": [untranslated, translated]}) == (f"({alone[0]})", alone[1])


def test_a_filter_search_reads_only_its_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "items"
    for number in range(20):
        architecture = "UNet" if number % 5 else "ResNet"
        _settled(
            _item(folder, f"m{number:02d}", **{"mlm:total_parameters": number * 1000, "mlm:architecture": architecture})
        )
    queries = [
        {"filter": '"mlm:total_parameters" < 3000'},
        {"filter": '"mlm:architecture" = \'ResNet\' AND "mlm:total_parameters" >= 5000'},
        {"filter": '"mlm:architecture" IN (\'ResNet\') OR "mlm:total_parameters" BETWEEN 18000 AND 19000'},
    ]
    expected = [["m00", "m01", "m02"], ["m05", "m10", "m15"], ["m00", "m05", "m10", "m15", "m18", "m19"]]
    reads = _count_reads(monkeypatch)
    for query, ids in zip(queries, expected, strict=True):
        assert _with_index(folder, query) == _without_index(folder, query)
        reads.clear()
        assert sorted(h.id for h in search(folder, **query)) == ids
        assert sorted(p.stem for p in reads) == ids  # only the candidates were read
    reads.clear()
    assert search(folder, filter='NOT "mlm:total_parameters" < 3000') and len(reads) == 20  # not translated


def test_property_rows_keep_kinds_and_leave_out_what_sqlite_cannot_hold() -> None:
    surrogate = json.loads('"\\ud800"')
    document = {"properties": {"n": 3, "f": 2.5, "b": True, "s": "x", "long": "y" * 300, "nul": "a\x00b",
                               "surrogate": surrogate, "big": 10**400, "none": None, "list": [1]}}  # fmt: skip
    rows = {name: (kind, value) for name, kind, value in property_rows(document)}
    assert rows == {"n": ("n", 3.0), "f": ("n", 2.5), "b": ("b", 1.0), "s": ("s", "x"), "long": ("o", None),
                    "nul": ("o", None), "surrogate": ("o", None), "big": ("o", None), "none": ("o", None),
                    "list": ("o", None)}  # fmt: skip
    assert property_rows({"properties": None}) == [] and property_rows({}) == []
    assert property_rows({"id": "a", "foo": 1, "properties": {}}) == [("foo", "o", None)]  # a top-level member only
    shadowed = {"id": "a", "foo": 1, "properties": {"foo": 2, "bar": 3}}  # cql2 reads the top-level "foo"
    assert property_rows(shadowed) == [("foo", "o", None), ("bar", "n", 3.0)]


@pytest.mark.parametrize("expression", [
    {"op": "<", "args": [{"property": "p"}, 5]},
    {"op": "=", "args": [{"property": "p"}, "x"]},
    {"op": "in", "args": [{"property": "p"}, ["x", 3]]},
    {"op": "between", "args": [{"property": "p"}, 1, 2]},
    {"op": "or", "args": [{"op": "=", "args": [{"property": "p"}, True]}, {"op": ">", "args": [{"property": "q"}, 1]}]},
])  # fmt: skip
def test_a_translated_filter_reads_index_ranges_not_every_row(expression: dict[str, Any]) -> None:
    """The cost follows the rows that answer: every lookup of props is a range of props_by_value, none a scan."""
    connection = sqlite3.connect(":memory:")
    connection.executescript(index._SCHEMA)
    condition = filter_condition(expression)
    assert condition is not None
    plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN SELECT id FROM files WHERE {condition[0]}",
                                                  condition[1])]  # fmt: skip
    lookups = [step for step in plan if " props " in f"{step} "]
    assert lookups and all("USING COVERING INDEX props_by_value (name=? AND kind=?" in step for step in lookups), plan
