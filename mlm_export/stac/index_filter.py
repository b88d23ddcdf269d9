"""CQL2 filters in the search index: the scalar properties of each Item, and a filter as SQL over them.

A ``filter=`` query (``"mlm:total_parameters" < 30000000``, ``"mlm:architecture" IN ('ResNet', 'UNet')``,
``"mlm:pretrained" = true``...) is narrowed by the index like the other criteria: :func:`property_rows` keeps, per
Item file, every top-level property with its kind and value (table ``props`` of :mod:`mlm_export.stac.index`), and
:func:`filter_condition` turns the parts of a filter it knows into SQL on ``files.id`` that admits a **superset** of
what ``cql2`` matches; :mod:`mlm_export.stac.matching` still evaluates the filter on every candidate, so the answers
are those of reading every file. Written by hand: no library translates CQL2 to SQLite (pygeofilter targets
SQLAlchemy/Django models, not these tables), and the translation has to follow what ``cql2`` (the evaluator the
matching uses) does, measured:

- numbers are compared as IEEE doubles (``2**60 > 2**60 - 1`` is false there): stored as ``REAL``, so SQLite
  compares the same doubles (booleans as 0.0/1.0, under their own kind);
- strings are compared as strings, byte by byte, no coercion (``'5' = '5.0'`` and two spellings of one timestamp are
  different): SQLite's ``BINARY`` collation on UTF-8 is that order;
- a boolean equals only a boolean; a property that is missing, or whose kind differs from the literal's, makes the
  comparison fail (no match) - a row of another kind is still admitted (harmless for a superset);
- ``between`` is inclusive; ``in`` is any of ``=``.

Translated: ``and`` (the known parts), ``or`` (when every part is known), ``=``, ``<``, ``<=``, ``>``, ``>=``,
``between`` and ``in`` between a plain property name (no dot, not a top-level Item field such as ``id``) and
literals (numbers, strings, booleans). Anything else (``not``, ``<>``, ``isNull``, ``like``, timestamps, arrays,
spatial or arithmetic operators, nested paths) narrows nothing: its Items are all candidates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Top-level Item members that cql2 resolves before the properties: never answered from ``props``.
_ITEM_FIELDS = frozenset({"id", "type", "collection", "geometry", "bbox", "links", "assets", "stac_version",
                          "stac_extensions", "properties"})  # fmt: skip
#: Longer strings are kept as kind "other" (admitted by every string comparison) so the index stays small.
MAX_TEXT = 256
#: (name, kind, value) of a property: kind "n" number, "s" string, "b" boolean (1.0/0.0), "o" anything else (None).
PropertyRow = tuple[str, str, float | str | None]
KINDS = ("b", "n", "o", "s")
_COMPARISONS = {"=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _value(value: Any) -> tuple[str, float | str | None]:
    """(kind, value) of one property value as the index keeps it."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return "o", None
    return _literal(value) or ("o", None)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from JSON: SQLite cannot hold it as text
        return False
    return True


def property_rows(document: Mapping[str, Any]) -> list[PropertyRow]:
    """(name, kind, value) of every property of the Item JSON ``document`` (see :func:`_value`).

    cql2 reads a top-level member before a property of the same name: a name the Item has at its top level is kept
    as kind "other" (always admitted), the standard members (:data:`_ITEM_FIELDS`) aside, which no filter is
    answered from.
    """
    properties = document.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    rows = [(name, *(_value(value) if name not in document else ("o", None)))
            for name, value in properties.items() if isinstance(name, str)]  # fmt: skip
    top = [name for name in document if isinstance(name, str) and name not in _ITEM_FIELDS and name not in properties]
    return rows + [(name, "o", None) for name in top]


def _literal(value: Any) -> tuple[str, float | str] | None:
    """(kind, SQL value) of a value the index compares (a property's or a cql2-json literal); None for others."""
    if isinstance(value, bool):
        return "b", float(value)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any double: cql2 cannot compare it the way SQLite would
            return None
        return ("n", number) if math.isfinite(number) else None
    if isinstance(value, str) and "\x00" not in value and _encodable(value):
        return "s", value
    return None


def _property(argument: Any) -> str | None:
    """The plain property name of a cql2-json ``{"property": name}`` the index holds; None otherwise."""
    if not isinstance(argument, Mapping) or set(argument) != {"property"}:
        return None
    name = argument["property"]
    if not isinstance(name, str) or "." in name or name in _ITEM_FIELDS:
        return None
    return name


def _kind_or_other(name: str, kind: str, where: str, values: list[Any]) -> tuple[str, list[Any]]:
    """Files whose property ``name`` is of ``kind`` and meets ``where`` (on ``value``), or is of another kind.

    Two index ranges of ``props_by_value`` (name, kind, value): a cost by the rows that answer, never by the catalog.
    """
    others = [k for k in KINDS if k != kind]
    sql = (f"id IN (SELECT file FROM props WHERE name = ? AND kind = ? AND {where} UNION ALL "
           f"SELECT file FROM props WHERE name = ? AND kind IN ({','.join('?' * len(others))}))")  # fmt: skip
    return sql, [name, kind, *values, name, *others]


def _compare(name: str, op: str, literal: tuple[str, float | str]) -> tuple[str, list[Any]]:
    """The files whose property ``name`` may satisfy ``name op literal`` (booleans only with ``=``)."""
    kind, value = literal
    if kind == "b" and op != "=":  # an order of booleans: every file having the property (missing never matches)
        return "id IN (SELECT file FROM props WHERE name = ?)", [name]
    return _kind_or_other(name, kind, f"value {_COMPARISONS[op]} ?", [value])


def _comparison(op: str, args: list[Any]) -> tuple[str, list[Any]] | None:
    if len(args) != 2:
        return None
    name, literal = _property(args[0]), _literal(args[1])
    if name is None:  # the literal first: 10 < "x" is "x" > 10
        name, literal, op = _property(args[1]), _literal(args[0]), _FLIPPED[op]
    if name is None or literal is None:
        return None
    return _compare(name, op, literal)


def _between(args: list[Any]) -> tuple[str, list[Any]] | None:
    if len(args) != 3:
        return None
    name, low, high = _property(args[0]), _literal(args[1]), _literal(args[2])
    if name is None or low is None or high is None or low[0] != "n" or high[0] != "n":
        return None
    return _kind_or_other(name, "n", "value BETWEEN ? AND ?", [low[1], high[1]])


def _in(args: list[Any]) -> tuple[str, list[Any]] | None:
    if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
        return None
    name = _property(args[0])
    literals = [_literal(value) for value in args[1]]
    if name is None or any(literal is None for literal in literals):
        return None
    parts = [_compare(name, "=", literal) for literal in literals if literal is not None]
    return "(" + " OR ".join(sql for sql, _ in parts) + ")", [v for _, values in parts for v in values]


def _combined(op: str, args: list[Any]) -> tuple[str, list[Any]] | None:
    parts = [filter_condition(arg) for arg in args]
    if op == "or" and (not parts or any(part is None for part in parts)):
        return None  # an unknown alternative may match anything
    known = [part for part in parts if part is not None]
    if not known:
        return None
    joiner = " AND " if op == "and" else " OR "
    return "(" + joiner.join(sql for sql, _ in known) + ")", [v for _, values in known for v in values]


def filter_condition(expression: Any) -> tuple[str, list[Any]] | None:
    """SQL on ``files.id`` admitting every Item the cql2-json ``expression`` may match; None: it narrows nothing."""
    if not isinstance(expression, Mapping):
        return None
    op, args = expression.get("op"), expression.get("args")
    if not isinstance(op, str) or not isinstance(args, list):
        return None
    op = op.lower()
    if op in ("and", "or"):
        return _combined(op, args)
    if op in _COMPARISONS:
        return _comparison(op, args)
    if op == "between":
        return _between(args)
    if op == "in":
        return _in(args)
    return None
