"""Computed filters over ``mlm:input`` and the frameworks, so a pgstac STAC API filters them with a GIN index.

Band names and channel counts live inside ``mlm:input`` (arrays of objects), and a framework may be named on an
asset; pgstac's queryables cannot reach them: in the pgstac this project runs (0.10), a queryable's
``property_path`` is a chain of keys under ``content``, and an array operator compares ``to_text_array(<that
path>)``. pgstac's own extension point for this is its operator table ``cql2_ops`` (op, SQL template, the operands
filled in): :func:`index_sql` adds one operator per computed field, whose template compares an IMMUTABLE SQL
function of the Item ``content`` with the literal array, and a GIN index on that expression on ``pgstac.items`` (a
partitioned index: every collection's partition, present and future, gets it). Nothing in the Items changes. The
computed fields:

- ``mlm_export:band_words`` (``&&``): the band key (:func:`~mlm_export.stac.bands.band_key`) of every band name an
  Item could be matched through: its inputs' band names, and the names, common names and first words of its band
  definitions (``bands``, ``eo:bands``, ``raster:bands`` in properties or on assets); ``*`` for a name Python and SQL
  might key differently (not ASCII, control characters) or an input whose ``bands`` is not a list.
- ``mlm_export:plain_bands`` (``<@``): the keys of the plain (not computed) input bands whose aliases all stay
  within the sensor tables (:data:`~mlm_export.stac.bands.SENSOR_BANDS`); a band a definition names otherwise is
  left out (so being contained in the user's bands, expanded by those tables, is necessary for a match).
- ``mlm_export:input_channels`` (``&&``): the size of every ``bands``/``channel(s)`` dimension of every input.
- ``mlm_export:framework_keys`` (``&&``): ``mlm:framework`` of the Item and of its assets, lower-case without
  punctuation (:func:`~mlm_export.stac.matching.framework_key`; ``*`` when not ASCII).

:func:`band_filter`, :func:`channels_filter` and :func:`framework_filter` build the cql2-json clauses; each admits a
superset of what :mod:`mlm_export.stac.matching` accepts (the in-process match still decides). A marker queryable
of each name (title "... (mlm-export, computed ...)") tells a client that the server has them. Register them on
another pgstac database with ``python -m mlm_export.stac.api_index | psql DSN`` (the local API does it at start-up).
Caveat: pgstac strips from an Item's content what equals its Collection's ``item_assets``; the functions do not see
those asset fields (mlm-export's ``publish`` writes no ``item_assets``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mlm_export.stac.bands import SENSOR_BANDS, band_key

#: Queryable names (a namespace of ours: their meaning is this module's, not the MLM extension's).
BAND_WORDS = "mlm_export:band_words"
PLAIN_BANDS = "mlm_export:plain_bands"
INPUT_CHANNELS = "mlm_export:input_channels"
FRAMEWORK_KEYS = "mlm_export:framework_keys"
QUERYABLES = (BAND_WORDS, PLAIN_BANDS, INPUT_CHANNELS, FRAMEWORK_KEYS)
#: The element every Item holds whose value cannot be computed in SQL like in Python: such an Item always passes.
WILDCARD = "*"


def sensor_relations() -> dict[str, list[str]]:
    """Band key -> the band keys related to it by a sensor table (name <-> eo common name, every sensor)."""
    related: dict[str, set[str]] = {}
    for table in SENSOR_BANDS.values():
        for name, common in table.items():
            related.setdefault(band_key(name), set()).add(band_key(common))
            related.setdefault(band_key(common), set()).add(band_key(name))
    return {key: sorted(values) for key, values in sorted(related.items())}


def expand_bands(keys: Iterable[str]) -> list[str]:
    """``keys`` with every key a sensor table relates to one of them, sorted."""
    relations = sensor_relations()
    found = set(keys)
    for key in list(found):
        found.update(relations.get(key, ()))
    return sorted(found)


def band_filter(keys: Iterable[str]) -> dict[str, Any]:
    """cql2-json: the Items whose bands may all be among ``keys`` (band keys of the user's bands)."""
    expanded = expand_bands(keys)
    return {
        "op": "and",
        "args": [
            {"op": operator(BAND_WORDS), "args": [[*expanded, WILDCARD]]},
            {"op": operator(PLAIN_BANDS), "args": [expanded]},
        ],
    }


def channels_filter(channels: int) -> dict[str, Any]:
    """cql2-json: the Items with an input of ``channels`` channels or a dynamic (-1) channel dimension."""
    return {"op": operator(INPUT_CHANNELS), "args": [[str(channels), "-1"]]}


def framework_filter(key: str) -> dict[str, Any]:
    """cql2-json: the Items whose or whose assets' framework key is ``key`` (or cannot be computed in SQL)."""
    return {"op": operator(FRAMEWORK_KEYS), "args": [[key, WILDCARD]]}


_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION pgstac.mlm_export_band_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT regexp_replace(upper(btrim(name)), '([A-Z])0+([0-9])', '\1\2', 'g')
$f$;

-- A name Python and SQL may key differently (not ASCII, control characters): its Item always passes.
CREATE OR REPLACE FUNCTION pgstac.mlm_export_odd(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT octet_length(name) <> char_length(name) OR name ~ '[\x01-\x1f\x7f]'
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_definitions(content jsonb) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 16 AS $f$
    WITH sources AS (
        SELECT content->'properties'->'bands' AS s UNION ALL SELECT content->'properties'->'eo:bands'
        UNION ALL
        SELECT a.value->k FROM jsonb_each(CASE WHEN jsonb_typeof(content->'assets') = 'object'
                                               THEN content->'assets' ELSE '{}' END) a,
                               unnest(ARRAY['bands', 'eo:bands', 'raster:bands']) k
        WHERE jsonb_typeof(a.value) = 'object'
    )
    SELECT d FROM sources, jsonb_array_elements(s) d
    WHERE jsonb_typeof(s) = 'array' AND jsonb_typeof(d) = 'object'
$f$;

-- The names of one band definition: name, common names, and the first word of each (non-empty strings).
CREATE OR REPLACE FUNCTION pgstac.mlm_export_definition_names(d jsonb) RETURNS SETOF text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 4 AS $f$
    SELECT w FROM (
        SELECT d->>k AS n FROM unnest(ARRAY['name', 'common_name', 'eo:common_name']) k
        WHERE jsonb_typeof(d->k) = 'string' AND btrim(d->>k) <> ''
    ) names, LATERAL (SELECT n AS w UNION ALL SELECT (regexp_split_to_array(btrim(n), ' +'))[1]) words
$f$;

-- Every input band: its name (a string, or the object's name), whether it is computed, and the bands value itself.
CREATE OR REPLACE FUNCTION pgstac.mlm_export_input_bands(content jsonb, OUT name text, OUT computed boolean,
                                                         OUT irregular boolean) RETURNS SETOF record
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 16 AS $f$
    SELECT CASE WHEN jsonb_typeof(b) = 'string' THEN b#>>'{}'
                WHEN jsonb_typeof(b) = 'object' AND jsonb_typeof(b->'name') = 'string' THEN b->>'name' END,
           jsonb_typeof(b) = 'object' AND b ? 'expression',
           FALSE
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(content->'properties'->'mlm:input') = 'array'
                                   THEN content->'properties'->'mlm:input' ELSE '[]' END) e,
         jsonb_array_elements(CASE WHEN jsonb_typeof(e->'bands') = 'array' THEN e->'bands' ELSE '[]' END) b
    WHERE jsonb_typeof(e) = 'object'
    UNION ALL
    SELECT NULL, FALSE, TRUE
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(content->'properties'->'mlm:input') = 'array'
                                   THEN content->'properties'->'mlm:input' ELSE '[]' END) e
    WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e->'bands') NOT IN ('array', 'null')
      AND e->'bands' NOT IN ('""', '{}', '0', 'false', '0.0')
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_band_words(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET jit = off AS $f$
    SELECT COALESCE(jsonb_agg(DISTINCT CASE WHEN n IS NULL OR pgstac.mlm_export_odd(n) THEN '*'
                                            ELSE pgstac.mlm_export_band_key(n) END), '[]')
    FROM (
        SELECT name AS n FROM pgstac.mlm_export_input_bands(content) WHERE name IS NOT NULL OR irregular
        UNION ALL
        SELECT pgstac.mlm_export_definition_names(d) FROM pgstac.mlm_export_definitions(content) d
    ) names
    WHERE n IS NULL OR pgstac.mlm_export_odd(n) OR btrim(n) <> ''
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_plain_bands(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET jit = off AS $f$
    WITH groups AS (
        SELECT array_agg(pgstac.mlm_export_band_key(n)) AS g, bool_or(pgstac.mlm_export_odd(n)) AS odd
        FROM pgstac.mlm_export_definitions(content) d, pgstac.mlm_export_definition_names(d) n
        GROUP BY d
    ), plain AS (
        SELECT DISTINCT pgstac.mlm_export_band_key(name) AS k FROM pgstac.mlm_export_input_bands(content)
        WHERE NOT computed AND name <> '' AND NOT pgstac.mlm_export_odd(name)
    )
    SELECT COALESCE(jsonb_agg(k), '[]') FROM plain
    WHERE NOT EXISTS (SELECT 1 FROM groups WHERE odd)
      AND NOT EXISTS (
        SELECT 1 FROM groups, unnest(g) x
        WHERE plain.k = ANY(g) AND x <> plain.k
          AND NOT jsonb_exists(COALESCE(pgstac.mlm_export_sensor_relations()->plain.k, '[]'), x)
      )
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_input_channels(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET jit = off AS $f$
    SELECT COALESCE(jsonb_agg(DISTINCT CASE jsonb_typeof(size)
                                           WHEN 'number' THEN trim_scale((size#>>'{}')::numeric)::text
                                           WHEN 'boolean' THEN CASE WHEN size = 'true' THEN '1' ELSE '0' END
                                       END) FILTER (WHERE jsonb_typeof(size) IN ('number', 'boolean')), '[]')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(content->'properties'->'mlm:input') = 'array'
                                   THEN content->'properties'->'mlm:input' ELSE '[]' END) e,
         LATERAL (SELECT e->'input' AS t) tensor,
         LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(t->'dim_order') = 'array'
                                           THEN t->'dim_order' ELSE '[]' END) WITH ORDINALITY o(dim, i),
         LATERAL (SELECT CASE WHEN jsonb_typeof(t->'shape') = 'array' THEN t->'shape'->(i::int - 1) END AS size) s
    WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(t) = 'object'
      AND dim IN ('"bands"', '"channel"', '"channels"')
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_framework_keys(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET jit = off AS $f$
    SELECT COALESCE(jsonb_agg(DISTINCT CASE WHEN octet_length(f) <> char_length(f) THEN '*'
                                            ELSE regexp_replace(lower(f), '[^0-9a-z]+', '', 'g') END), '[]')
    FROM (
        SELECT content->'properties'->>'mlm:framework' AS f
        WHERE jsonb_typeof(content->'properties'->'mlm:framework') = 'string'
        UNION ALL
        SELECT a.value->>'mlm:framework'
        FROM jsonb_each(CASE WHEN jsonb_typeof(content->'assets') = 'object' THEN content->'assets' ELSE '{}' END) a
        WHERE jsonb_typeof(a.value->'mlm:framework') = 'string'
    ) frameworks
$f$;
"""

_DEFINITIONS = {
    BAND_WORDS: ("Band keys an Item can be matched through", "mlm_export_band_words", "&&"),
    PLAIN_BANDS: ("Plain input band keys whose aliases are in the sensor tables", "mlm_export_plain_bands", "<@"),
    INPUT_CHANNELS: ("Channel counts of the inputs", "mlm_export_input_channels", "&&"),
    FRAMEWORK_KEYS: ("Framework keys of the Item and of its assets", "mlm_export_framework_keys", "&&"),
}


def operator(name: str) -> str:
    """The cql2 operator that filters the computed field ``name`` (used as ``{"op": ..., "args": [[...]]}``)."""
    return name.replace(":", "_")


def index_sql() -> str:
    """SQL that registers the computed filters, their GIN indexes and marker queryables in pgstac (idempotent)."""
    relations = json.dumps(sensor_relations()).replace("'", "''")
    statements = [
        "SET search_path TO pgstac, public;",
        "CREATE OR REPLACE FUNCTION pgstac.mlm_export_sensor_relations() RETURNS jsonb "
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT '{relations}'::jsonb $f$;",
        _FUNCTIONS,
    ]
    for name, (title, function, sql_operator) in _DEFINITIONS.items():
        computed = f"pgstac.to_text_array(pgstac.{function}(content))"
        template = f"{computed} {sql_operator} pgstac.to_text_array((%s)::jsonb)"
        definition = {
            "title": f"{title} (mlm-export, computed: filter with the operator {operator(name)})",
            "type": "array",
            "items": {"type": "string"},
        }
        statements += [
            f"INSERT INTO pgstac.cql2_ops (op, template) VALUES ('{operator(name)}', '{template}') "
            "ON CONFLICT (op) DO UPDATE SET template = EXCLUDED.template;",
            f"DELETE FROM pgstac.queryables WHERE name = '{name}';",
            f"INSERT INTO pgstac.queryables (name, definition) VALUES ('{name}', '{json.dumps(definition)}');",
            f"CREATE INDEX IF NOT EXISTS {function}_idx ON pgstac.items USING gin ({computed});",
        ]
    return "\n".join(statements) + "\n"


if __name__ == "__main__":
    print(index_sql())
