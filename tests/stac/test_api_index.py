"""The computed pgstac filters (bands, channels, framework) run in the server with their GIN index, admit every hit
of the in-process match (tricky Items included), and a server without them gives the same answers (issue 25)."""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from local_stac import LOOPBACK
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from test_collection import all_bands_example

from mlm_export.stac import api_index
from mlm_export.stac.local_api import LocalSTACAPI, start_local_api
from mlm_export.stac.matching import parse_query
from mlm_export.stac.search import search
from mlm_export.stac.search_api import api_entries, has_computed_filters

_SPEC = importlib.util.spec_from_file_location(
    "catalog_items", Path(__file__).resolve().parents[2] / "benchmarks" / "catalog_items.py"
)
assert _SPEC is not None and _SPEC.loader is not None
catalog_items = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(catalog_items)

EDGE, GENERATED, GENERATED_COUNT = "edge", "generated", 200
S2_ALL = catalog_items.BAND_SETS["sentinel-2-l1c"]


def _variant(name: str, bands: Any = None, definitions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    document = copy.deepcopy(all_bands_example())
    document["id"] = name
    if bands is not None:
        document["properties"]["mlm:input"][0]["bands"] = bands
    if definitions is not None:
        document["assets"]["weights"]["eo:bands"] = definitions
    return document


def edge_items() -> list[dict[str, Any]]:
    """Items whose matching SQL could get wrong: aliases of their own, computed and odd band names, asset
    frameworks, float/boolean/dynamic channel sizes, bands that are not a list."""
    items = [
        all_bands_example(),
        _variant("renamed", ["X1"], [{"name": "X1", "common_name": "red"}]),
        _variant("computed", [{"name": "ndvi", "expression": "(B08 - B04) / (B08 + B04)"}]),
        _variant("unicode", ["Bändchen"], []),
        _variant("string-bands", "RGB", []),
        _variant("padded", [" B004 ", "b3"], []),
        _variant("first-word", ["B04 - red"], [{"name": "B04 - red"}]),
        _variant("no-bands", [], []),
    ]
    asset = _variant("asset-framework", ["B04"])
    asset["properties"]["mlm:framework"] = "Py-Torch"
    asset["assets"]["weights"]["mlm:framework"] = "ONNX Runtime"
    channels = {"float-channels": 4.0, "bool-channels": True, "dynamic-channels": -1}
    for name, size in channels.items():
        item = _variant(name)
        item["properties"]["mlm:input"][0]["input"]["shape"][1] = size
        items.append(item)
    return [*items, asset]


QUERIES: list[dict[str, Any]] = [
    {"bands": ["red"]},
    {"bands": ["B04", "B08"]},
    {"bands": ["bändchen"]},
    {"bands": ["R", "G", "B"]},
    {"bands": ["B04"]},
    {"bands": ["B03", "B04"]},
    {"bands": ["B02", "B03", "B04", "B08"]},
    {"bands": ["blue", "green", "red", "nir"]},
    {"bands": [*S2_ALL, "X1"]},  # more than MAX_SUBSET_BANDS: compared with <@
    {"framework": "onnxruntime"},
    {"framework": "ONNX Runtime"},
    {"framework": "pytorch"},
    {"framework": "Py Torch", "bands": ["B04"]},
    {"input_channels": 4},
    {"input_channels": 1},
    {"input_channels": 7},
    {"input_channels": 13, "tasks": ["classification"]},
]


def _load(api: LocalSTACAPI, collection: str, documents: list[dict[str, Any]]) -> None:
    """Straight into the database (no validation: a server may hold anything)."""
    dsn = api.dsn.replace("postgres@", f"postgres:{api.password_file.read_text().strip()}@")
    with PgstacDB(dsn=dsn) as db:
        loader = Loader(db)
        extent = {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}
        loader.load_collections(iter([{"type": "Collection", "stac_version": "1.0.0", "id": collection,
                                       "description": collection, "license": "proprietary", "extent": extent,
                                       "links": []}]), insert_mode=Methods.upsert)  # fmt: skip
        loader.load_items(iter([dict(d, collection=collection) for d in documents]), insert_mode=Methods.upsert)


def _generated() -> list[dict[str, Any]]:
    return list(catalog_items.generate_items(GENERATED_COUNT))


@pytest.fixture(scope="module")
def loaded(stac_api: LocalSTACAPI) -> LocalSTACAPI:
    _load(stac_api, EDGE, edge_items())
    _load(stac_api, GENERATED, _generated())
    return stac_api


@pytest.fixture(scope="module")
def foreign() -> Iterator[LocalSTACAPI]:
    """A plain pgstac server (no computed filters), holding the same Items."""
    with start_local_api(computed_queryables=False) as api:
        _load(api, EDGE, edge_items())
        _load(api, GENERATED, _generated())
        yield api


def _ranked(hits: list[Any]) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 9)) for h in hits]


def _transferred(url: str, collection: str, **arguments: Any) -> list[dict[str, Any]]:
    return [entry.document for entry in api_entries(url, parse_query(**arguments), collections=[collection])]


@LOOPBACK
@pytest.mark.parametrize("query", QUERIES, ids=[json.dumps(q)[:50] for q in QUERIES])
def test_the_server_filter_admits_every_hit_of_tricky_items(loaded: LocalSTACAPI, query: dict[str, Any]) -> None:
    embedded = search(edge_items(), **query)
    assert _ranked(search(loaded.url, collections=[EDGE], **query)) == _ranked(embedded)


@LOOPBACK
def test_the_tricky_queries_hit_what_they_are_about(loaded: LocalSTACAPI) -> None:
    def ids(**query: Any) -> set[str]:
        return {h.id for h in search(loaded.url, collections=[EDGE], **query)}

    assert has_computed_filters(__import__("requests").Session(), loaded.url)
    assert "renamed" in ids(bands=["red"]) and "computed" in ids(bands=["B04", "B08"])
    assert ids(bands=["bändchen"]) == {"unicode"} and ids(bands=["R", "G", "B"]) == {"string-bands"}
    assert {"padded", "first-word"} <= ids(bands=["B03", "B04"]) and ids(framework="onnxruntime") == {"asset-framework"}
    assert "asset-framework" in ids(framework="pytorch")
    assert {"float-channels", "dynamic-channels"} <= ids(input_channels=4) and "bool-channels" in ids(input_channels=1)
    # the server sent only candidates: far fewer than the collection
    assert len(_transferred(loaded.url, EDGE, framework="onnxruntime")) == 1
    assert len(_transferred(loaded.url, EDGE, bands=["bändchen"])) == 2  # the unicode Item, and "string-bands" (*)


@LOOPBACK
@pytest.mark.parametrize(
    "query",
    [
        {"bands": catalog_items.RARE_BANDS},
        {"framework": catalog_items.RARE_FRAMEWORK},
        {"input_channels": catalog_items.RARE_CHANNELS},
        {"bands": ["B02", "B03", "B04", "B08"]},
        {"bands": catalog_items.BAND_SETS["sentinel-2-l2a"]},
        {"framework": "onnx", "input_channels": 3},
    ],
    ids=["rare-bands", "rare-framework", "rare-channels", "rgbn", "s2-l2a", "onnx-3"],
)
def test_only_the_hits_are_transferred(loaded: LocalSTACAPI, foreign: LocalSTACAPI, query: dict[str, Any]) -> None:
    documents = _generated()
    embedded = search(documents, **query)
    transferred = _transferred(loaded.url, GENERATED, **query)
    assert sorted(d["id"] for d in transferred) == sorted(h.id for h in embedded)  # exactly the hits
    if "bands" in query and query["bands"] == catalog_items.RARE_BANDS:
        assert len(transferred) == catalog_items.RARE
    assert _ranked(search(loaded.url, collections=[GENERATED], **query)) == _ranked(embedded)
    # a foreign server (no computed filters) streams more Items, trimmed by the Fields extension: same answer
    assert not has_computed_filters(__import__("requests").Session(), foreign.url)
    streamed = _transferred(foreign.url, GENERATED, **query)
    assert len(streamed) > len(transferred) and all("mlm:output" not in d["properties"] for d in streamed)
    hits = search(foreign.url, collections=[GENERATED], **query)
    assert _ranked(hits) == _ranked(embedded) and all(h.href and h.href.startswith(foreign.url) for h in hits)


@LOOPBACK
def test_the_foreign_server_gives_the_same_answers_on_tricky_items(foreign: LocalSTACAPI) -> None:
    for query in QUERIES:
        assert _ranked(search(foreign.url, collections=[EDGE], **query)) == _ranked(search(edge_items(), **query))


@LOOPBACK
def test_the_filters_use_their_index(loaded: LocalSTACAPI) -> None:
    password = loaded.password_file.read_text().strip()
    filters = {  # every indexed field: through the one GIN index of mlm_export_tokens
        "band_words": api_index.band_filter(["B4"])["args"][0],
        "plain_band_set": api_index.band_filter(["B4"])["args"][1],
        "input_channels": api_index.channels_filter(5),
        "framework_keys": api_index.framework_filter("onnx"),
    }
    function = "mlm_export_tokens(content)"
    with psycopg.connect(loaded.dsn, password=password, autocommit=True) as connection:
        connection.execute("SET search_path TO pgstac, public")
        connection.execute("SET enable_seqscan TO off")
        for expression in filters.values():
            (where,) = connection.execute("SELECT pgstac.cql2_query(%s::jsonb)", [json.dumps(expression)]).fetchone()
            plan = "\n".join(r[0] for r in connection.execute(f"EXPLAIN SELECT id FROM pgstac.items WHERE {where}"))
            conditions = [line for line in plan.splitlines() if "Index Cond" in line]
            assert "Index Scan" in plan and any(function in line for line in conditions), plan
