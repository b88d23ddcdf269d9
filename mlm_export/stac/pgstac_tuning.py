"""What the local STAC API tunes in PostgreSQL and pgstac for loading speed, with the same stored Items.

Measured loading generated MLM Items with pgstac's ``create_items`` (what ``bulk_items`` calls), 500 per call, on a
loaded 2-core machine: 2.75 ms per Item, of which pgstac's ``content_dehydrate`` took ~1.6 ms and, inside it,
``strip_jsonb`` (the difference between an Item and its Collection's base item) ~1.3 ms. ``strip_jsonb`` is a
recursive SQL function: PostgreSQL cannot inline it, and a SQL function called from another query plans its body
again at every call (every Item, every nesting level). :data:`STRIP_JSONB_SQL` is the same function in PL/pgSQL,
whose plans are kept for the session: the same branches in the same order, the same queries, so the same result for
every input (tests/stac/test_pgstac_tuning.py compares both on Items and edge cases); 1.7 ms per Item instead of
2.75. It is installed only on the pgstac version whose ``strip_jsonb`` it was checked against
(:data:`PGSTAC_VERSION`); on another, pgstac's stays. No pgstac setting avoids the cost: ``content_slim`` strips
every Item against the base item even when the Collection has no ``item_assets``.

Reading has the same shape: every Item a search returns is hydrated by ``merge_jsonb`` (the Item merged back with
its base item), pgstac's recursive SQL twin of ``strip_jsonb``. :data:`MERGE_JSONB_SQL` is it in PL/pgSQL, the same
way: formatting a 500-Item page of generated MLM Items took 316 ms with pgstac's and 88 ms with it (identical
output on 5,000 Items; tests/stac/test_pgstac_tuning.py compares both on the same pairs as ``strip_jsonb``).

:func:`server_options`: the PostgreSQL settings of the local server (see the README, "Local STAC API"):
``synchronous_commit=off`` (a commit returns before its WAL reaches the disk: a crash of the machine may lose the
last fraction of a second of commits, never corrupts the database); ``fsync=off`` only for a temporary database
(removed on stop), never for a ``data_dir`` a user keeps; larger ``shared_buffers`` and ``max_wal_size`` so that
loading 50,000 Items neither evicts its own indexes nor checkpoints every few seconds.
"""

from __future__ import annotations

#: The pgstac version whose ``strip_jsonb`` :data:`STRIP_JSONB_SQL` reproduces.
PGSTAC_VERSION = "0.10.0"

#: pgstac 0.10.0's ``strip_jsonb`` (migrations/pgstac.0.10.0.sql) in PL/pgSQL: same CASE order, same queries.
STRIP_JSONB_SQL = r"""
CREATE OR REPLACE FUNCTION pgstac.strip_jsonb(_a jsonb, _b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE
    ta text := jsonb_typeof(_a);
    tb text := jsonb_typeof(_b);
    result jsonb;
BEGIN
    IF (_a IS NULL OR ta = 'null') AND _b IS NOT NULL AND tb != 'null' THEN
        RETURN '"𒍟※"'::jsonb;
    END IF;
    IF _b IS NULL OR ta = 'null' THEN RETURN _a; END IF;
    IF _a = _b AND ta = 'object' THEN RETURN '{}'::jsonb; END IF;
    IF _a = _b THEN RETURN NULL; END IF;
    IF ta = 'object' AND tb = 'object' THEN
        SELECT jsonb_strip_nulls(jsonb_object_agg(key, pgstac.strip_jsonb(a.value, b.value))) INTO result
        FROM jsonb_each(_a) AS a FULL JOIN jsonb_each(_b) AS b USING (key);
        RETURN result;
    END IF;
    IF ta = 'array' AND tb = 'array' AND jsonb_array_length(_a) = jsonb_array_length(_b) THEN
        SELECT jsonb_agg(m) INTO result
        FROM (SELECT pgstac.strip_jsonb(jsonb_array_elements(_a), jsonb_array_elements(_b)) AS m) AS l;
        RETURN result;
    END IF;
    RETURN _a;
END;
$f$;
"""

#: pgstac 0.10.0's ``merge_jsonb`` (the hydration of every Item a search returns) in PL/pgSQL: same CASE order.
MERGE_JSONB_SQL = r"""
CREATE OR REPLACE FUNCTION pgstac.merge_jsonb(_a jsonb, _b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $f$
DECLARE
    ta text := jsonb_typeof(_a);
    tb text := jsonb_typeof(_b);
    result jsonb;
BEGIN
    IF _a = '"𒍟※"'::jsonb THEN RETURN NULL; END IF;
    IF _a IS NULL OR ta = 'null' THEN RETURN _b; END IF;
    IF ta = 'object' AND tb = 'object' THEN
        SELECT jsonb_strip_nulls(jsonb_object_agg(key, pgstac.merge_jsonb(a.value, b.value))) INTO result
        FROM jsonb_each(coalesce(_a, '{}'::jsonb)) AS a
        FULL JOIN jsonb_each(coalesce(_b, '{}'::jsonb)) AS b USING (key);
        RETURN result;
    END IF;
    IF ta = 'array' AND tb = 'array' AND jsonb_array_length(_a) = jsonb_array_length(_b) THEN
        SELECT jsonb_agg(m) INTO result
        FROM (SELECT pgstac.merge_jsonb(jsonb_array_elements(_a), jsonb_array_elements(_b)) AS m) AS l;
        RETURN result;
    END IF;
    RETURN _a;
END;
$f$;
"""

#: PostgreSQL settings of the local server (``-c name=value``), whatever the data directory.
SETTINGS = {
    "synchronous_commit": "off",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
}


def tuning_sql() -> str:
    """SQL installing :data:`STRIP_JSONB_SQL` and :data:`MERGE_JSONB_SQL` on pgstac :data:`PGSTAC_VERSION`.

    Idempotent: on another pgstac version it installs nothing.
    """
    return (
        "DO $do$ BEGIN\n"
        f"IF pgstac.get_version() = '{PGSTAC_VERSION}' THEN\n"
        f"EXECUTE $sql${STRIP_JSONB_SQL}$sql$;\n"
        f"EXECUTE $sql${MERGE_JSONB_SQL}$sql$;\n"
        "END IF;\n"
        "END $do$;\n"
    )


def server_options(*, temporary: bool) -> list[str]:
    """``postgres`` options (``-c name=value`` pairs): :data:`SETTINGS`, plus ``fsync=off`` if ``temporary``.

    A temporary database is removed on stop: a machine crash loses nothing anyone keeps.
    """
    settings = dict(SETTINGS, **({"fsync": "off"} if temporary else {}))
    return [part for name, value in settings.items() for part in ("-c", f"{name}={value}")]
