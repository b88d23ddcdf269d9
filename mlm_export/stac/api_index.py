"""Computed filters over ``mlm:input`` and the frameworks, so a pgstac STAC API filters them with a GIN index.

Band names and channel counts live inside ``mlm:input`` (arrays of objects), and a framework may be named on an
asset; pgstac's queryables cannot reach them: in the pgstac this project runs (0.10), a queryable's
``property_path`` is a chain of keys under ``content``, and an array operator compares ``to_text_array(<that
path>)``. pgstac's own extension point for this is its operator table ``cql2_ops`` (op, SQL template, the operands
filled in): :func:`index_sql` adds one operator per computed field. Every indexed field is computed at once by the
IMMUTABLE function ``mlm_export_tokens(content)`` (one scan of the bands; each value behind a prefix of its field:
``w`` band words, character 30 the plain band set, ``c`` channels, ``f`` frameworks), which one GIN index on
``pgstac.items`` holds (a partitioned index: every collection's partition, present and future, gets it); an
operator's template is ``mlm_export_tokens(content) && <the literal array, prefixed>``. Loading an Item costs about
0.17 ms of PostgreSQL CPU for it: one PL/pgSQL pass that walks arrays by position and keys names inline (0.55 ms
when it called a function per band name and walked arrays with queries; 1.4 ms for the four indexes of one function
each before that); the other functions below are derived from its tokens. Nothing in the Items changes. The
computed fields:

- ``mlm_export:band_words`` (``&&``): the band key (:func:`~mlm_export.stac.bands.band_key`) of every band name an
  Item could be matched through: its inputs' band names, and the names, common names and first words of its band
  definitions (``bands``, ``eo:bands``, ``raster:bands`` in properties or on assets); ``*`` for a name Python and SQL
  might key differently (not ASCII, control characters) or an input whose ``bands`` is not a list.
- ``mlm_export:plain_bands`` (``<@``): the keys of the plain (not computed) input bands whose aliases all stay
  within the sensor tables (:data:`~mlm_export.stac.bands.SENSOR_BANDS`); a band a definition names otherwise is
  left out (so being contained in the user's bands, expanded by those tables, is necessary for a match).
- ``mlm_export:plain_band_set`` (one token in the index): the same keys sorted and joined, compared with every
  subset of the expanded user bands when they are at most :data:`MAX_SUBSET_BANDS`: exact in the index, where ``<@``
  on a GIN index rechecks (recomputes) every candidate row (so ``plain_bands`` has no index of its own: its ``<@`` only
  filters what ``band_words``' index lets through, for queries of more than 10 expanded bands).
- ``mlm_export:input_channels`` (``&&``): the size of every ``bands``/``channel(s)`` dimension of every input.
- ``mlm_export:framework_keys`` (``&&``): ``mlm:framework`` of the Item and of its assets, lower-case without
  punctuation (:func:`~mlm_export.stac.matching.framework_key`; ``*`` when not ASCII).

:func:`band_filter`, :func:`channels_filter` and :func:`framework_filter` build the cql2-json clauses; each admits a
superset of what :mod:`mlm_export.stac.matching` accepts (the in-process match still decides). The functions
declare a high COST, so the planner reads the index rather than computing them row by row (measured at 5,000 Items:
a 500-Item page of a broad bands query 2.8 s, as without a filter, against 9.7 s before). A marker queryable of
each name (title "... (mlm-export, computed ...)") tells a client that
the server has them. Register them on another pgstac database with ``python -m mlm_export.stac.api_index | psql
DSN`` (the local API does it at start-up).
Caveat: pgstac strips from an Item's content what equals its Collection's ``item_assets``; the functions do not see
those asset fields (mlm-export's ``publish`` writes no ``item_assets``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

from mlm_export.stac.bands import SENSOR_BANDS, band_key

#: Queryable names (a namespace of ours: their meaning is this module's, not the MLM extension's).
BAND_WORDS = "mlm_export:band_words"
PLAIN_BANDS = "mlm_export:plain_bands"
INPUT_CHANNELS = "mlm_export:input_channels"
FRAMEWORK_KEYS = "mlm_export:framework_keys"
PLAIN_BAND_SET = "mlm_export:plain_band_set"
QUERYABLES = (BAND_WORDS, PLAIN_BANDS, PLAIN_BAND_SET, INPUT_CHANNELS, FRAMEWORK_KEYS)
#: Up to this many (expanded) user bands, the plain band set is compared as one of the subsets of the user's
#: bands (an exact btree lookup, ``2**n`` values); beyond, with ``<@`` on the GIN index (which rechecks each row).
MAX_SUBSET_BANDS = 10
#: Joins the sorted keys of a plain band set (a band key holds no control character: such names are left out).
SEPARATOR = "\x1f"
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
    if len(expanded) <= MAX_SUBSET_BANDS:
        subsets = [SEPARATOR.join(c) for n in range(len(expanded) + 1) for c in itertools.combinations(expanded, n)]
        contained = {"op": operator(PLAIN_BAND_SET), "args": [subsets]}
    else:
        contained = {"op": operator(PLAIN_BANDS), "args": [expanded]}
    return {"op": "and", "args": [{"op": operator(BAND_WORDS), "args": [[*expanded, WILDCARD]]}, contained]}


def channels_filter(channels: int) -> dict[str, Any]:
    """cql2-json: the Items with an input of ``channels`` channels or a dynamic (-1) channel dimension."""
    return {"op": operator(INPUT_CHANNELS), "args": [[str(channels), "-1"]]}


def framework_filter(key: str) -> dict[str, Any]:
    """cql2-json: the Items whose or whose assets' framework key is ``key`` (or cannot be computed in SQL)."""
    return {"op": operator(FRAMEWORK_KEYS), "args": [[key, WILDCARD]]}


_FUNCTIONS = r"""
-- The strings of a JSON array (or of one value), each behind a prefix: the literals compared with mlm_export_tokens.
CREATE OR REPLACE FUNCTION pgstac.mlm_export_prefixed(prefix text, j jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT ARRAY(SELECT prefix || x FROM unnest(pgstac.to_text_array(j)) x)
$f$;

-- Every computed field of an Item in one array, for one GIN index: band words 'w...', the plain band set chr(30)...
-- (its keys sorted, joined by chr(31)), channel counts 'c...', framework keys 'f...'. One pass over the Item in
-- PL/pgSQL: arrays walked by position (plain expressions; a FOR ... IN SELECT is a query per loop), one query at the
-- end. Band words: every band key an Item can be matched through ('*' for an odd name, not ASCII or with control
-- characters, or an input whose bands is not a list); the plain keys: those of its plain input bands whose
-- definition groups stay within the sensor relations (none if a definition name is odd).
CREATE OR REPLACE FUNCTION pgstac.mlm_export_tokens(content jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 100000 AS $f$
DECLARE
    props jsonb := content->'properties';
    assets jsonb := content->'assets';
    sources jsonb[] := ARRAY[props->'bands', props->'eo:bands'];
    inputs jsonb := props->'mlm:input';
    asset jsonb; src jsonb; d jsonb; e jsonb; b jsonb; t jsonb; dims jsonb; sizes jsonb; size jsonb;
    n text; x text; k text; f text; i int; j int; m int;
    words text[] := '{}'; grp text[]; keys text[] := '{}'; bad text[] := '{}'; channels text[] := '{}';
    frameworks text[] := '{}'; relations jsonb; odd boolean := false; o boolean; result text[];
BEGIN
    IF jsonb_typeof(props->'mlm:framework') = 'string' THEN
        frameworks := frameworks || (props->>'mlm:framework');
    END IF;
    IF jsonb_typeof(assets) = 'object' THEN
        t := jsonb_path_query_array(assets, '$.*');
        FOR i IN 0 .. jsonb_array_length(t) - 1 LOOP
            asset := t->i;
            IF jsonb_typeof(asset) = 'object' THEN
                sources := sources || ARRAY[asset->'bands', asset->'eo:bands', asset->'raster:bands'];
                IF jsonb_typeof(asset->'mlm:framework') = 'string' THEN
                    frameworks := frameworks || (asset->>'mlm:framework');
                END IF;
            END IF;
        END LOOP;
    END IF;
    FOREACH src IN ARRAY sources LOOP
        CONTINUE WHEN src IS NULL OR jsonb_typeof(src) <> 'array';
        FOR i IN 0 .. jsonb_array_length(src) - 1 LOOP
            d := src->i;
            CONTINUE WHEN jsonb_typeof(d) <> 'object';
            grp := '{}';
            FOREACH k IN ARRAY ARRAY['name', 'common_name', 'eo:common_name'] LOOP
                CONTINUE WHEN jsonb_typeof(d->k) IS DISTINCT FROM 'string';
                n := d->>k;
                o := octet_length(n) <> char_length(n) OR n ~ '[\x01-\x1f\x7f]';
                IF o THEN odd := true; words := words || '*'::text; CONTINUE; END IF;
                n := btrim(n);
                CONTINUE WHEN n = '';
                grp := grp || regexp_replace(upper(n), '([A-Z])0+([0-9])', '\1\2', 'g');
                IF position(' ' IN n) > 0 THEN
                    grp := grp || regexp_replace(upper(btrim((regexp_split_to_array(n, ' +'))[1])),
                                                 '([A-Z])0+([0-9])', '\1\2', 'g');
                END IF;
            END LOOP;
            words := words || grp;
            IF cardinality(grp) > 1 THEN  -- a key is not plain if its group names another key that is no alias of it
                IF relations IS NULL THEN relations := pgstac.mlm_export_sensor_relations(); END IF;
                FOREACH k IN ARRAY grp LOOP
                    FOREACH x IN ARRAY grp LOOP
                        IF x <> k AND NOT jsonb_exists(COALESCE(relations->k, '[]'), x) THEN
                            bad := bad || k;
                            EXIT;
                        END IF;
                    END LOOP;
                END LOOP;
            END IF;
        END LOOP;
    END LOOP;
    IF jsonb_typeof(inputs) = 'array' THEN
        FOR i IN 0 .. jsonb_array_length(inputs) - 1 LOOP
            e := inputs->i;
            CONTINUE WHEN jsonb_typeof(e) <> 'object';
            t := e->'input';
            IF jsonb_typeof(t) = 'object' AND jsonb_typeof(t->'dim_order') = 'array' THEN
                dims := t->'dim_order';
                sizes := CASE WHEN jsonb_typeof(t->'shape') = 'array' THEN t->'shape' END;
                FOR j IN 0 .. jsonb_array_length(dims) - 1 LOOP
                    CONTINUE WHEN dims->j NOT IN ('"bands"', '"channel"', '"channels"');
                    size := sizes->j;
                    IF jsonb_typeof(size) = 'number' THEN
                        channels := channels || trim_scale((size#>>'{}')::numeric)::text;
                    ELSIF jsonb_typeof(size) = 'boolean' THEN
                        channels := channels || CASE WHEN size = 'true' THEN '1' ELSE '0' END;
                    END IF;
                END LOOP;
            END IF;
            b := e->'bands';
            IF jsonb_typeof(b) <> 'array' THEN
                IF jsonb_typeof(b) <> 'null' AND b NOT IN ('""', '{}', '0', 'false') THEN
                    words := words || '*'::text;
                END IF;
                CONTINUE;
            END IF;
            CONTINUE WHEN b IS NULL;
            FOR j IN 0 .. jsonb_array_length(b) - 1 LOOP
                d := b->j;
                n := CASE WHEN jsonb_typeof(d) = 'string' THEN d#>>'{}'
                          WHEN jsonb_typeof(d) = 'object' AND jsonb_typeof(d->'name') = 'string' THEN d->>'name' END;
                CONTINUE WHEN n IS NULL;
                IF octet_length(n) <> char_length(n) OR n ~ '[\x01-\x1f\x7f]' THEN
                    words := words || '*'::text;
                    CONTINUE;
                END IF;
                CONTINUE WHEN btrim(n) = '';
                x := regexp_replace(upper(btrim(n)), '([A-Z])0+([0-9])', '\1\2', 'g');
                words := words || x;
                IF NOT (jsonb_typeof(d) = 'object' AND d ? 'expression') THEN
                    keys := keys || x;
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    SELECT ARRAY(SELECT DISTINCT 'w' || w FROM unnest(words) w)
        || (chr(30) || CASE WHEN odd THEN '' ELSE
                (SELECT COALESCE(string_agg(k2, chr(31) ORDER BY k2), '')
                 FROM (SELECT DISTINCT k2 FROM unnest(keys) k2 WHERE NOT k2 = ANY(bad)) p) END)
        || ARRAY(SELECT DISTINCT 'c' || c FROM unnest(channels) c)
        || ARRAY(SELECT DISTINCT 'f' || CASE WHEN octet_length(f2) <> char_length(f2) THEN '*'
                                             ELSE regexp_replace(lower(f2), '[^0-9a-z]+', '', 'g') END
                 FROM unnest(frameworks) f2)
        INTO result;
    RETURN result;
END;
$f$;

-- The band words and plain keys of mlm_export_tokens, as {"words": [...], "plain": [...]} (sorted).
CREATE OR REPLACE FUNCTION pgstac.mlm_export_bands(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 100000 AS $f$
    SELECT jsonb_build_object(
        'words', to_jsonb(ARRAY(SELECT substr(t, 2) FROM unnest(tokens) t WHERE left(t, 1) = 'w' ORDER BY 1)),
        'plain', to_jsonb(ARRAY(SELECT k FROM unnest(tokens) t, unnest(string_to_array(substr(t, 2), chr(31))) k
                                WHERE left(t, 1) = chr(30) ORDER BY 1)))
    FROM (SELECT pgstac.mlm_export_tokens(content) AS tokens) computed
$f$;

-- The values of mlm_export_tokens behind a prefix ('c' channels, 'f' frameworks), as a JSON array.
CREATE OR REPLACE FUNCTION pgstac.mlm_export_token_values(content jsonb, prefix text) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 100000 AS $f$
    SELECT to_jsonb(ARRAY(SELECT substr(t, 2) FROM unnest(pgstac.mlm_export_tokens(content)) t
                          WHERE left(t, 1) = prefix ORDER BY 1))
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_bands_scan(content jsonb, plain boolean) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT pgstac.mlm_export_bands(content)->(CASE WHEN plain THEN 'plain' ELSE 'words' END)
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_band_words(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$ SELECT pgstac.mlm_export_bands_scan(content, false) $f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_plain_bands(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$ SELECT pgstac.mlm_export_bands_scan(content, true) $f$;

-- The plain band keys, sorted, joined by chr(31): compared to the subsets of the user's bands.
CREATE OR REPLACE FUNCTION pgstac.mlm_export_plain_band_set(content jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT array_to_string(pgstac.to_text_array(pgstac.mlm_export_bands_scan(content, true)), chr(31))
$f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_input_channels(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$ SELECT pgstac.mlm_export_token_values(content, 'c') $f$;

CREATE OR REPLACE FUNCTION pgstac.mlm_export_framework_keys(content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$ SELECT pgstac.mlm_export_token_values(content, 'f') $f$;

-- Helpers of the former formulation (one call per band name), no longer used.
DROP FUNCTION IF EXISTS pgstac.mlm_export_odd(text);
DROP FUNCTION IF EXISTS pgstac.mlm_export_band_key(text);
"""

#: The prefix of the plain band set in ``mlm_export_tokens`` (character 30: no band key holds it).
SET = "\x1e"
#: name -> (title, function, SQL operator, prefix of its values in ``mlm_export_tokens``; None: not indexed).
_DEFINITIONS = {
    BAND_WORDS: ("Band keys an Item can be matched through", "mlm_export_band_words", "&&", "w"),
    PLAIN_BANDS: ("Plain input band keys whose aliases are in the sensor tables", "mlm_export_plain_bands", "<@", None),
    PLAIN_BAND_SET: ("Those keys, sorted and joined by the unit separator", "mlm_export_plain_band_set", "", SET),
    INPUT_CHANNELS: ("Channel counts of the inputs", "mlm_export_input_channels", "&&", "c"),
    FRAMEWORK_KEYS: ("Framework keys of the Item and of its assets", "mlm_export_framework_keys", "&&", "f"),
}
#: The one index of the computed fields (a GIN index of ``mlm_export_tokens``), and those it replaced.
TOKENS_INDEX = "mlm_export_tokens_idx"
_FORMER_INDEXES = ("mlm_export_band_words_idx", "mlm_export_plain_bands_idx", "mlm_export_plain_band_set_idx",
                   "mlm_export_input_channels_idx", "mlm_export_framework_keys_idx")  # fmt: skip


def operator(name: str) -> str:
    """The cql2 operator that filters the computed field ``name`` (used as ``{"op": ..., "args": [[...]]}``)."""
    return name.replace(":", "_")


def index_sql() -> str:
    """SQL that registers the computed filters, their indexes and marker queryables in pgstac (idempotent)."""
    relations = json.dumps(sensor_relations()).replace("'", "''")
    statements = [
        "SET search_path TO pgstac, public;",
        "CREATE OR REPLACE FUNCTION pgstac.mlm_export_sensor_relations() RETURNS jsonb "
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT '{relations}'::jsonb $f$;",
        _FUNCTIONS,
    ]
    for name, (title, function, sql_operator, prefix) in _DEFINITIONS.items():
        if prefix is None:  # only for more than MAX_SUBSET_BANDS bands, after band_words' index: not indexed
            computed = f"pgstac.to_text_array(pgstac.{function}(content))"
            template = f"{computed} {sql_operator} pgstac.to_text_array((%s)::jsonb)"
        else:  # the prefixed values, overlapping the Item's tokens: one lookup per value in the GIN index
            literal = "chr(30)" if prefix == SET else f"''{prefix}''"  # quoted inside the INSERT's literal
            template = f"pgstac.mlm_export_tokens(content) && pgstac.mlm_export_prefixed({literal}, (%s)::jsonb)"
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
        ]
    statements += [f"DROP INDEX IF EXISTS pgstac.{index};" for index in _FORMER_INDEXES]
    statements.append(f"CREATE INDEX IF NOT EXISTS {TOKENS_INDEX} ON pgstac.items USING gin "
                      "(pgstac.mlm_export_tokens(content));")  # fmt: skip
    return "\n".join(statements) + "\n"


if __name__ == "__main__":
    print(index_sql())
