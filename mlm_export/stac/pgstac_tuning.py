"""What the local STAC API tunes in PostgreSQL and pgstac for loading speed, with the same stored Items.

Measured loading generated MLM Items with pgstac's ``create_items`` (what ``bulk_items`` calls), 500 per call, on a
loaded 2-core machine: 2.75 ms per Item, of which pgstac's ``content_dehydrate`` took ~1.6 ms and, inside it,
``strip_jsonb`` (the difference between an Item and its Collection's base item) ~1.3 ms. ``strip_jsonb`` is a
recursive SQL function: PostgreSQL cannot inline it, and a SQL function called from another query plans its body
again at every call (every Item, every nesting level). :data:`STRIP_JSONB_SQL` is the same function in PL/pgSQL,
whose plans are kept for the session: the same branches in the same order, the same queries, so the same result for
every input (tests/stac/test_pgstac_tuning.py compares both on Items and edge cases); 1.7 ms per Item instead of
2.75. It is installed only on the pgstac version whose ``strip_jsonb`` it was checked against
(:data:`PGSTAC_VERSION`); on another, pgstac's stays. Likewise :data:`CHECK_PARTITION_SQL`: pgstac's
``check_partition`` with an advisory lock, so that concurrent loads into one collection (``publish`` keeps two
``bulk_items`` requests in flight) do not fail when both widen the partition's datetime constraints.
No pgstac setting avoids the cost of ``strip_jsonb``: ``content_slim`` strips
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
``default_toast_compression=lz4``: an Item's JSON (~6 KB) is compressed when pgstac writes it to its staging table
and to the partition; lz4 instead of pglz took PostgreSQL's CPU per Item from 0.80 to 0.67 ms (the values read back
are the same; compression only changes how they are stored).
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

#: pgstac 0.10.0's ``check_partition`` with one addition between the ``-- mlm-export`` comments: a transaction that
#: creates the partition or widens its datetime constraints takes a transaction-level advisory lock of the
#: collection first, then reads the constraints again. pgstac's reads them, then drops and re-creates them
#: (``ACCESS EXCLUSIVE``) from what it read: two concurrent loads into one collection each widened the constraint
#: read before the other's commit, so one failed (``violates check constraint "_items_N_dt"``, or a deadlock; the
#: API answered 500). A load whose Items fall within the constraints takes no lock (the common case once a few
#: chunks landed), so loads into one collection run concurrently.
CHECK_PARTITION_SQL = r"""
CREATE OR REPLACE FUNCTION pgstac.check_partition(
    _collection text,
    _dtrange tstzrange,
    _edtrange tstzrange
) RETURNS text AS $$
DECLARE
    c RECORD;
    pm RECORD;
    _partition_name text;
    _partition_dtrange tstzrange;
    _constraint_dtrange tstzrange;
    _constraint_edtrange tstzrange;
    q text;
    err_context text;
    _widen boolean;  -- mlm-export
BEGIN
    SELECT * INTO c FROM pgstac.collections WHERE id=_collection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Collection % does not exist', _collection USING ERRCODE = 'foreign_key_violation', HINT = 'Make sure collection exists before adding items';
    END IF;

    -- Through partition_name rather than repeating its arithmetic: it buckets in UTC and returns
    -- an existing partition with the bounds it actually has.
    SELECT p.partition_name, p.partition_range
    INTO _partition_name, _partition_dtrange
    FROM pgstac.partition_name(_collection, lower(_dtrange)) p;

    IF NOT _partition_dtrange @> _dtrange THEN
        RAISE EXCEPTION 'dtrange % is greater than the partition size % for collection %', _dtrange, c.partition_trunc, _collection;
    END IF;

    -- Constraint ranges are maintained asynchronously, so they come from the
    -- catalog rather than partition_stats.
    SELECT ps.partition, m.constraint_dtrange, m.constraint_edtrange
        INTO pm
    FROM partition_stats ps
        JOIN LATERAL partition_catalog_meta(ps.partition) m ON TRUE
    WHERE ps.collection = _collection AND ps.partition_dtrange @> _dtrange
    LIMIT 1;
    -- mlm-export: creating the partition or widening its constraints is done by one transaction at a time per
    -- collection (a transaction-level advisory lock), which reads the constraints again once it holds the lock.
    -- Without the lock, only constraints really read count as covering: one read while another transaction
    -- replaces it may come back missing (pg_get_constraintdef reads the catalog as of now, not as of the query).
    _widen := NOT FOUND;
    IF NOT _widen THEN
        _widen := (get_tstz_constraint(partition_oid(pm.partition), 'end_datetime') @> _edtrange
                   AND get_tstz_constraint(partition_oid(pm.partition), 'datetime') @> _dtrange) IS NOT TRUE;
    END IF;
    IF _widen THEN
        PERFORM pg_advisory_xact_lock(hashtext('pgstac.check_partition'), hashtext(_collection));
        SELECT ps.partition, m.constraint_dtrange, m.constraint_edtrange
            INTO pm
        FROM partition_stats ps
            JOIN LATERAL partition_catalog_meta(ps.partition) m ON TRUE
        WHERE ps.collection = _collection AND ps.partition_dtrange @> _dtrange
        LIMIT 1;
    END IF;
    -- mlm-export: end
    IF FOUND THEN
        RAISE DEBUG '% % %', _edtrange, _dtrange, pm;
        _constraint_edtrange :=
            tstzrange(
                least(
                    lower(_edtrange),
                    nullif(lower(pm.constraint_edtrange), '-infinity')
                ),
                greatest(
                    upper(_edtrange),
                    nullif(upper(pm.constraint_edtrange), 'infinity')
                ),
                '[]'
            );
        _constraint_dtrange :=
            tstzrange(
                least(
                    lower(_dtrange),
                    nullif(lower(pm.constraint_dtrange), '-infinity')
                ),
                greatest(
                    upper(_dtrange),
                    nullif(upper(pm.constraint_dtrange), 'infinity')
                ),
                '[]'
            );

        IF pm.constraint_edtrange @> _edtrange AND pm.constraint_dtrange @> _dtrange THEN
            RETURN pm.partition;
        ELSE
            PERFORM drop_table_constraints(_partition_name);
        END IF;
    ELSE
        _constraint_edtrange := _edtrange;
        _constraint_dtrange := _dtrange;
    END IF;
    RAISE DEBUG 'EXISTING CONSTRAINTS % %, NEW % %', pm.constraint_dtrange, pm.constraint_edtrange, _constraint_dtrange, _constraint_edtrange;
    RAISE DEBUG 'Creating partition % %', _partition_name, _partition_dtrange;
    IF c.partition_trunc IS NULL THEN
        q := format(
            $q$
                CREATE TABLE IF NOT EXISTS %I partition OF items FOR VALUES IN (%L);
                CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I (id);
                GRANT ALL ON %I to pgstac_ingest;
            $q$,
            _partition_name,
            _collection,
            concat(_partition_name,'_pk'),
            _partition_name,
            _partition_name
        );
    ELSE
        q := format(
            $q$
                CREATE TABLE IF NOT EXISTS %I partition OF items FOR VALUES IN (%L) PARTITION BY RANGE (datetime);
                CREATE TABLE IF NOT EXISTS %I partition OF %I FOR VALUES FROM (%L) TO (%L);
                CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I (id);
                GRANT ALL ON %I TO pgstac_ingest;
            $q$,
            format('_items_%s', c.key),
            _collection,
            _partition_name,
            format('_items_%s', c.key),
            lower(_partition_dtrange),
            upper(_partition_dtrange),
            format('%s_pk', _partition_name),
            _partition_name,
            _partition_name
        );
    END IF;

    BEGIN
        EXECUTE q;
    EXCEPTION
        WHEN duplicate_table THEN
            RAISE DEBUG 'Partition % already exists.', _partition_name;
        WHEN others THEN
            GET STACKED DIAGNOSTICS err_context = PG_EXCEPTION_CONTEXT;
            RAISE INFO 'Error Name:%',SQLERRM;
            RAISE INFO 'Error State:%', SQLSTATE;
            RAISE INFO 'Error Context:%', err_context;
    END;
    -- The _constraint_ ranges are the union of the existing constraint and the
    -- incoming batch, so they hold for rows already present as well as the ones
    -- about to be added. Queueable: rebuilding validates the partition under an
    -- ACCESS EXCLUSIVE lock.
    PERFORM run_or_queue(format(
        'SELECT create_table_constraints(%L, %L, %L);',
        _partition_name,
        _constraint_dtrange,
        _constraint_edtrange
    ));
    PERFORM maintain_partitions(_partition_name);
    -- Search finds partitions through partition_stats, so the row has to exist
    -- before this transaction commits. A queued stats update has not written it.
    IF NOT update_partition_stats_q(_partition_name, true) THEN
        INSERT INTO partition_stats (partition, collection, partition_dtrange)
            VALUES (_partition_name, _collection, _partition_dtrange)
            ON CONFLICT (partition) DO UPDATE
                SET collection = EXCLUDED.collection,
                    partition_dtrange = EXCLUDED.partition_dtrange
                WHERE
                    partition_stats.collection IS DISTINCT FROM EXCLUDED.collection
                    OR partition_stats.partition_dtrange IS DISTINCT FROM EXCLUDED.partition_dtrange
        ;
    END IF;
    RETURN _partition_name;
END;
$$ LANGUAGE PLPGSQL SECURITY DEFINER SET SEARCH_PATH TO pgstac, public;
"""  # noqa: E501 - pgstac's text, verbatim

#: PostgreSQL settings of the local server (``-c name=value``), whatever the data directory.
SETTINGS = {
    "synchronous_commit": "off",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "default_toast_compression": "lz4",
}


def tuning_sql() -> str:
    """SQL installing the PL/pgSQL replacements on pgstac :data:`PGSTAC_VERSION` (idempotent; else nothing).

    :data:`STRIP_JSONB_SQL`, :data:`MERGE_JSONB_SQL` and :data:`CHECK_PARTITION_SQL`.
    """
    return (
        "DO $do$ BEGIN\n"
        f"IF pgstac.get_version() = '{PGSTAC_VERSION}' THEN\n"
        f"EXECUTE $sql${STRIP_JSONB_SQL}$sql$;\n"
        f"EXECUTE $sql${MERGE_JSONB_SQL}$sql$;\n"
        f"EXECUTE $sql${CHECK_PARTITION_SQL}$sql$;\n"
        "END IF;\n"
        "END $do$;\n"
    )


def server_options(*, temporary: bool) -> list[str]:
    """``postgres`` options (``-c name=value`` pairs): :data:`SETTINGS`, plus ``fsync=off`` if ``temporary``.

    A temporary database is removed on stop: a machine crash loses nothing anyone keeps.
    """
    settings = dict(SETTINGS, **({"fsync": "off"} if temporary else {}))
    return [part for name, value in settings.items() for part in ("-c", f"{name}={value}")]
