"""Bounds on a search ``filter``, checked before the ``cql2`` package sees it.

``cql2`` parses and validates recursively: 100,000 nested parentheses or 20,000 ``OR`` terms overflow its stack
(the process dies with a segmentation fault), and validation costs ~13 MB per ``NOT`` nested in another (64 took
1 GB, a 250-level JSON filter 7.5 GB). So a filter is refused with a :class:`ConfigurationError` naming the bound
when it exceeds any of:

- :data:`MAX_FILTER_CHARS` characters (text, or JSON text);
- :data:`MAX_FILTER_NESTING` levels of ``(``/``[``/``{`` (text) or of JSON objects and arrays (dict);
- :data:`MAX_FILTER_TERMS` ``AND``/``OR``/``NOT`` keywords (text) or :data:`MAX_FILTER_NODES` JSON values (dict);
- :data:`MAX_FILTER_NOTS` ``NOT`` operators nested in one another.

The text check is a hand-written scanner on purpose (it is the only parsing done here, and it must be cheap and
iterative): it skips quoted strings and identifiers and counts brackets and keywords. It over-approximates ``NOT``
nesting (a ``NOT`` before ``(`` covers the group, consecutive ``NOT``s stack). JSON is walked iteratively, after
the text check has bounded its nesting so that ``json.loads`` cannot recurse deeply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlm_export.errors import ConfigurationError

MAX_FILTER_CHARS = 65_536
MAX_FILTER_NESTING = 64
MAX_FILTER_TERMS = 1_000
MAX_FILTER_NODES = 10_000
MAX_FILTER_NOTS = 8

_HINT = "Write a shorter, flatter filter (e.g. a_overlaps/IN lists instead of long OR chains), or search in steps."
_KEYWORDS = frozenset({"AND", "OR", "NOT"})


def _refuse(what: str, bound: int, name: str) -> ConfigurationError:
    return ConfigurationError(f"filter: it has {what}; at most {bound} ({name}) are accepted.", hint=_HINT)


def check_filter(value: str | Mapping[str, Any]) -> Any:
    """Check ``value`` against the bounds; return it, or the parsed object when it is JSON text.

    Raises:
        ConfigurationError: a bound is exceeded (the message names it), or ``value`` is neither text nor a dict.
    """
    if isinstance(value, Mapping):
        check_json(value)
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"filter: expected CQL2 text or a cql2-json dict, got {type(value).__name__}.")
    if len(value) > MAX_FILTER_CHARS:
        raise _refuse(f"{len(value)} characters", MAX_FILTER_CHARS, "MAX_FILTER_CHARS")
    check_text(value)
    if not value.lstrip().startswith("{"):
        return value
    try:
        document = json.loads(value)
    except ValueError:
        return value  # cql2 reports where (the text check above bounded it)
    check_json(document)
    return document


def check_text(text: str) -> None:
    """Bracket nesting, keyword count and ``NOT`` nesting of CQL2 (or JSON) ``text``, scanned once, no recursion."""
    depth = terms = pending_nots = 0
    not_scopes: list[int] = []  # the bracket depth each open NOT scope closes at
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "'\"":  # a string or a quoted identifier
            i = _skip_quoted(text, i)
            pending_nots = 0
            continue
        if char in "([{":
            depth += 1
            if depth > MAX_FILTER_NESTING:
                raise _refuse(f"more than {MAX_FILTER_NESTING} nested brackets", MAX_FILTER_NESTING,
                              "MAX_FILTER_NESTING")  # fmt: skip
            not_scopes += [depth] * pending_nots
            pending_nots = 0
        elif char in ")]}":
            while not_scopes and not_scopes[-1] == depth:
                not_scopes.pop()
            depth = max(depth - 1, 0)
        elif char.isalpha() or char == "_":
            end = _word_end(text, i)
            word = text[i:end].upper()
            i = end - 1
            terms += word in _KEYWORDS
            if terms > MAX_FILTER_TERMS:
                raise _refuse(f"more than {MAX_FILTER_TERMS} AND/OR/NOT terms", MAX_FILTER_TERMS, "MAX_FILTER_TERMS")
            pending_nots = pending_nots + 1 if word == "NOT" else 0
            _check_nots(len(not_scopes) + pending_nots)
        elif not char.isspace():
            pending_nots = 0
        i += 1


def _word_end(text: str, start: int) -> int:
    """The index after the word (name, keyword, number with letters) starting at ``start``."""
    i = start + 1
    while i < len(text) and (text[i].isalnum() or text[i] in "_:.-"):
        i += 1
    return i


def _skip_quoted(text: str, start: int) -> int:
    """The index after the string quoted by ``text[start]`` (``''`` and backslash escapes skipped)."""
    quote, i, n = text[start], start + 1, len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
        elif text[i] == quote and quote == "'" and i + 1 < n and text[i + 1] == "'":
            i += 2
        elif text[i] == quote:
            return i + 1
        else:
            i += 1
    return n


def _check_nots(count: int) -> None:
    if count > MAX_FILTER_NOTS:
        raise _refuse(f"more than {MAX_FILTER_NOTS} NOTs nested in one another", MAX_FILTER_NOTS, "MAX_FILTER_NOTS")


def check_json(document: Any) -> None:
    """Nesting, size and ``NOT`` nesting of a cql2-json ``document``, walked iteratively."""
    stack: list[tuple[Any, int, int]] = [(document, 1, 0)]  # value, its nesting, NOTs above and at it
    nodes = 1
    while stack:
        value, depth, nots = stack.pop()
        if not isinstance(value, (Mapping, list, tuple)):
            continue
        if depth > MAX_FILTER_NESTING:
            raise _refuse(f"more than {MAX_FILTER_NESTING} nested JSON objects and arrays", MAX_FILTER_NESTING,
                          "MAX_FILTER_NESTING")  # fmt: skip
        if isinstance(value, Mapping):
            op = value.get("op")
            if isinstance(op, str) and op.lower() == "not":
                nots += 1
                _check_nots(nots)
            children = list(value.values())
        else:
            children = list(value)
        nodes += len(children)
        if nodes > MAX_FILTER_NODES:
            raise _refuse(f"more than {MAX_FILTER_NODES} JSON values", MAX_FILTER_NODES, "MAX_FILTER_NODES")
        stack += [(child, depth + 1, nots) for child in children]
