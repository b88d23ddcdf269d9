"""The local API's pgstac tuning: the PL/pgSQL ``strip_jsonb``/``merge_jsonb`` give what pgstac's SQL ones give;
``check_partition`` lets concurrent loads into one collection succeed; the settings."""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from local_stac import LOOPBACK, without_nulls

from mlm_export.stac.local_api import LocalSTACAPI
from mlm_export.stac.pgstac_tuning import CHECK_PARTITION_SQL, PGSTAC_VERSION, SETTINGS, server_options

pytestmark = LOOPBACK
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from catalog_items import generate_items  # noqa: E402

#: (a, b) pairs reaching every branch of strip_jsonb: nulls (SQL and JSON), equal and different scalars, objects
#: with missing, extra and nested null keys, arrays of equal and of different lengths.
EDGE_CASES: list[tuple[Any, Any]] = [
    (None, {"x": 1}),
    (None, None),
    ({"x": 1}, None),
    ("null", {"x": 1}),
    ({"x": None}, {"x": 1}),
    ({"x": 1}, {"x": 1}),
    (1, 1),
    ("a", "b"),
    ({"a": 1, "b": {"c": None, "d": 2}, "e": None}, {"a": 1, "b": {"d": 2}, "f": 3}),
    ({"a": [1, {"b": 2, "c": None}], "d": [1]}, {"a": [1, {"b": 2}], "d": [1, 2]}),
    ([1, 2, 3], [1, 5, 3]),
    ([1, 2], [1, 2, 3]),
    ({"assets": {"m": {"href": "x", "type": "t"}}}, {"assets": {"m": {"type": "t"}, "n": {"href": "y"}}}),
    ({"assets": {"m": {"href": "x"}}}, {"assets": None, "type": "Feature", "stac_version": "1.0.0"}),
    ({"k": [None, {"z": None}]}, {"k": [None, {"z": 1}]}),
]


def _migration_function(pattern: str) -> str:
    """The text of a function of pgstac's migration (``pattern``: a regular expression from its CREATE on)."""
    migration = importlib.resources.files("pypgstac") / "migrations" / f"pgstac.{PGSTAC_VERSION}.sql"
    found = re.search(pattern, migration.read_text(), re.DOTALL)
    assert found is not None
    return found.group(0)


def _original(function: str) -> str:
    """pgstac's own ``function`` (``strip_jsonb``, ``merge_jsonb``) from its migration, as ``pg_temp.<it>_original``."""
    original = _migration_function(rf"CREATE OR REPLACE FUNCTION {function}\(.*?\$\$ LANGUAGE SQL IMMUTABLE;")
    return original.replace(f"{function}(", f"pg_temp.{function}_original(")


def _language(connection: psycopg.Connection, function: str) -> tuple[str] | None:
    return connection.execute(
        "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = "
        f"'pgstac.{function}(jsonb, jsonb)'::regprocedure"
    ).fetchone()


def _sql_json(value: Any) -> str | None:
    """The SQL parameter of a pair member: SQL NULL for None, JSON null for "null", else its JSON text."""
    return "null" if value == "null" else json.dumps(value) if value is not None else None


def _item_pairs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """30 generated Items and the base items they are stripped against (with and without the weights' fields)."""
    bases = [{"type": "Feature", "stac_version": "1.0.0", "assets": None, "collection": "c"}]
    items = list(generate_items(30, seed=3))
    bases.append({**bases[0], "assets": {"weights": {k: v for k, v in items[0]["assets"]["weights"].items()
                                                      if k != "href"}}})  # fmt: skip
    return items, bases


@pytest.fixture
def connection(stac_api: LocalSTACAPI) -> Iterator[psycopg.Connection]:
    password = stac_api.password_file.read_text().strip()
    with psycopg.connect(stac_api.dsn, password=password, autocommit=True) as connection:
        yield connection


def test_the_plpgsql_strip_jsonb_is_installed_and_equals_pgstacs(connection: psycopg.Connection) -> None:
    assert connection.execute("SELECT pgstac.get_version()").fetchone() == (PGSTAC_VERSION,)
    assert _language(connection, "strip_jsonb") == ("plpgsql",)
    connection.execute(_original("strip_jsonb"))
    items, bases = _item_pairs()
    pairs = EDGE_CASES + [(item, base) for item in items for base in bases]
    compare = (
        "SELECT pgstac.strip_jsonb(a, b), pg_temp.strip_jsonb_original(a, b), "
        "pgstac.strip_jsonb(a, b) IS NOT DISTINCT FROM pg_temp.strip_jsonb_original(a, b) "
        "FROM (SELECT %s::jsonb AS a, %s::jsonb AS b) pair"
    )
    stripped_somewhere = 0
    for a, b in pairs:
        ours, theirs, same = connection.execute(compare, [_sql_json(a), _sql_json(b)]).fetchone()
        assert same, (a, b, ours, theirs)
        stripped_somewhere += ours != a
    assert stripped_somewhere >= len(pairs) // 2  # the pairs do strip something, not only pass through


def test_the_plpgsql_merge_jsonb_is_installed_and_equals_pgstacs(connection: psycopg.Connection) -> None:
    """The hydration of what a search returns: pgstac's merge of a stripped Item with its base item."""
    assert _language(connection, "merge_jsonb") == ("plpgsql",)
    connection.execute(_original("merge_jsonb"))
    marker = "\U0001235f\u203b"  # pgstac's "removed from the base item" value
    pairs = EDGE_CASES + [(b, a) for a, b in EDGE_CASES] + [(marker, 1), ({"x": marker, "y": 2}, {"x": 1, "z": 3})]
    items, bases = _item_pairs()
    for item in items:  # what the items table holds: the Item stripped against its base item
        for base in bases:
            (stripped,) = connection.execute("SELECT pgstac.strip_jsonb(%s::jsonb, %s::jsonb)",
                                             [json.dumps(item), json.dumps(base)]).fetchone()  # fmt: skip
            pairs.append((stripped, base))
    compare = (
        "SELECT pgstac.merge_jsonb(a, b), pg_temp.merge_jsonb_original(a, b), "
        "pgstac.merge_jsonb(a, b) IS NOT DISTINCT FROM pg_temp.merge_jsonb_original(a, b) "
        "FROM (SELECT %s::jsonb AS a, %s::jsonb AS b) pair"
    )
    restored, whole = 0, [without_nulls(item) for item in items]  # pgstac keeps no JSON null
    for a, b in pairs:
        ours, theirs, same = connection.execute(compare, [_sql_json(a), _sql_json(b)]).fetchone()
        assert same, (a, b, ours, theirs)
        restored += ours in whole
    assert restored >= len(items)  # the stripped Items do come back whole, not only pass through


def test_check_partition_is_pgstacs_with_only_the_lock_added() -> None:
    original = _migration_function(r"CREATE OR REPLACE FUNCTION check_partition\(.*?\$\$ LANGUAGE PLPGSQL SEC[^;]*;")
    ours = re.sub(r"\n    -- mlm-export: creating.*?-- mlm-export: end\n", "\n", CHECK_PARTITION_SQL, flags=re.DOTALL)
    ours = ours.replace("    _widen boolean;  -- mlm-export\n", "")
    ours = ours.replace("FUNCTION pgstac.check_partition(", "FUNCTION check_partition(")
    assert ours.strip() == original.strip()
    assert CHECK_PARTITION_SQL.count("pg_advisory_xact_lock") == 1


def test_concurrent_bulk_loads_into_one_new_collection_all_land(stac_api: LocalSTACAPI) -> None:
    """Four ``bulk_items`` in flight into a new collection, in small chunks of random time ranges: many of them
    widen the partition's constraints at once (pgstac's check_partition answered 500 here: a violated
    ``_items_N_dt`` constraint or a deadlock)."""
    collection = {"type": "Collection", "id": "concurrent", "stac_version": "1.0.0", "description": "concurrent",
                  "license": "other", "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                                             "temporal": {"interval": [[None, None]]}}}  # fmt: skip
    items = [dict(item, collection="concurrent") for item in generate_items(400, seed=5)]
    chunks = [items[i : i + 10] for i in range(0, len(items), 10)]
    with httpx.Client(base_url=stac_api.url, timeout=120) as client:
        assert client.post("/collections", json=collection).status_code in (200, 201)

        def load(chunk: list[dict[str, Any]]) -> int:
            body = {"items": {item["id"]: item for item in chunk}, "method": "insert"}
            return client.post("/collections/concurrent/bulk_items", json=body).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(load, chunks))
    assert statuses == [200] * len(chunks)
    password = stac_api.password_file.read_text().strip()
    with psycopg.connect(stac_api.dsn, password=password) as connection:
        stored = connection.execute("SELECT count(*), min(datetime), max(end_datetime) FROM pgstac.items "
                                    "WHERE collection = 'concurrent'").fetchone()  # fmt: skip
    assert stored is not None and stored[0] == len(items)


def test_the_server_runs_with_the_documented_settings(connection: psycopg.Connection) -> None:
    for name, value in SETTINGS.items():
        shown = connection.execute(f"SHOW {name}").fetchone()[0]
        assert shown.lower() == value.lower(), (name, shown)
    assert connection.execute("SHOW fsync").fetchone() == ("off",)  # the session fixture's database is temporary


def test_a_kept_database_keeps_fsync() -> None:
    kept = server_options(temporary=False)
    assert "fsync=off" not in kept and "synchronous_commit=off" in kept
    assert "fsync=off" in server_options(temporary=True)
