"""One search, two backends: the same queries against a local catalog directory and a running STAC API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from local_stac import LOOPBACK
from test_collection import EXAMPLES, SPECS, TILE, all_bands_example, factory_items

from mlm_export.errors import ConfigurationError, STACAPIError
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.local_api import LocalSTACAPI
from mlm_export.stac.publish import publish
from mlm_export.stac.search import search

S2 = ["B02", "B03", "B04", "B08"]
HREF_BASE = "https://models.example.com/catalog"

#: (query arguments) -- each runs on both backends; the expected hits come from the embedded one.
QUERIES: list[dict[str, Any]] = [
    {},
    {"bbox": TILE},
    {"bbox": [6.5, 46.5, 6.5, 46.5]},  # a point
    {"bbox": [10.0, 45.0, 11.0, 46.0]},  # touches the Alps box along its east edge: no match there
    {"bbox": [170.0, -10.0, -170.0, 10.0]},  # across the antimeridian
    {"bbox": [-60.0, -10.0, -50.0, 0.0]},
    {"datetime": "2020-06-01T00:00:00Z"},
    {"datetime": "2022"},
    {"datetime": "2022-01-01/.."},
    {"datetime": "../2015-06-01"},
    {"datetime": "2019-01-01/2019-12-31"},
    {"tasks": ["classification"]},
    {"tasks": "segmentation"},
    {"tasks": ["object-detection"]},
    {"tasks": ["classification", "regression"]},
    {"bands": S2},
    {"bands": ["blue", "green", "red", "nir"]},
    {"bands": ["B2", "B3", "B4"]},
    {"framework": "pytorch"},
    {"framework": "TensorFlow"},
    {"input_channels": 3},
    {"input_channels": 4, "framework": "PyTorch"},
    {"bbox": TILE, "bands": S2},
    {"bbox": TILE, "datetime": "2020-06-01", "tasks": ["classification"]},
    {"filter": "\"mlm:framework\" = 'PyTorch'"},
    {"filter": '"mlm:input.0.input.shape.1" = 4'},
    {"filter": {"op": "a_contains", "args": [{"property": "mlm:tasks"}, ["classification"]]}},
    {"filter": '"mlm:total_parameters" > 0', "tasks": ["classification"]},
    {"bbox": TILE, "bands": S2, "limit": 2},
    {"tasks": ["classification"], "limit": 1},
]


@pytest.fixture(scope="module")
def both_backends(
    tmp_path_factory: pytest.TempPathFactory, schema_dir: Path, stac_api: LocalSTACAPI
) -> tuple[Path, str, str]:
    """The same Items as a local catalog directory and in a collection of the running STAC API."""
    root = tmp_path_factory.mktemp("agreement")
    files = []
    for document in [*factory_items(root / "models"), all_bands_example()]:
        path = root / "models" / f"{document['id']}.json"
        path.write_text(json.dumps(document))
        files.append(path)
    files += EXAMPLES
    build_catalog(files, root / "cat", schema_dir=schema_dir)
    result = publish(files, stac_api.url, "agreement", href_base=HREF_BASE, schema_dir=schema_dir, progress=False)
    assert len(result.published) == len(files)
    return root / "cat", stac_api.url, "agreement"


@LOOPBACK
@pytest.mark.parametrize("query", QUERIES, ids=[json.dumps(q)[:60] for q in QUERIES])
def test_both_backends_give_the_same_hits(both_backends: tuple[Path, str, str], query: dict[str, Any]) -> None:
    catalog, url, collection = both_backends
    embedded = search(catalog, **query)
    remote = search(url, collections=[collection], **query)
    assert [(h.id, round(h.score, 9)) for h in remote] == [(h.id, round(h.score, 9)) for h in embedded]
    assert all(h.href and h.href.startswith(url) for h in remote)


@LOOPBACK
def test_the_queries_are_not_trivial(both_backends: tuple[Path, str, str]) -> None:
    catalog = both_backends[0]
    counts = [len(search(catalog, **query)) for query in QUERIES]
    everything = counts[0]
    assert everything == len(SPECS) + 1 + len(EXAMPLES)
    assert sum(0 < c < everything for c in counts) >= 20  # most queries select a proper subset
    assert counts[QUERIES.index({"bbox": [10.0, 45.0, 11.0, 46.0]})] < counts[QUERIES.index({"bbox": TILE})] + 5


def test_filter_reaches_into_inputs_and_a_missing_property_is_no_match(tmp_path: Path, schema_dir: Path) -> None:
    items = factory_items(tmp_path / "models")
    build_catalog(items, tmp_path / "cat", schema_dir=schema_dir)
    rgb = {h.id for h in search(tmp_path / "cat", filter='"mlm:input.0.input.shape.1" = 3')}
    assert rgb == {n for n, spec in SPECS.items() if len(spec[1]) == 3}
    assert search(tmp_path / "cat", filter='"no:such" = 1') == []
    limited = search(tmp_path / "cat", tasks=["classification"], limit=2)
    assert [h.id for h in limited] == [h.id for h in search(tmp_path / "cat", tasks=["classification"])][:2]


@pytest.mark.parametrize(
    ("text", "position"),
    [('"mlm:framework" = ', "1:19"), ("a = 1 AND (b = 2", "1:17"), ('{"op": "=", "args": [1]', "column 23")],
)
def test_a_filter_that_does_not_parse_points_at_the_position(tmp_path: Path, text: str, position: str) -> None:
    with pytest.raises(ConfigurationError, match=f"filter:.*{position}"):
        search(tmp_path, filter=text)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"tasks": ["sorting"]}, "not an MLM task"), ({"tasks": []}, "at least one"), ({"limit": 0}, "limit")],
)
def test_bad_arguments_are_named(tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        search(tmp_path, **arguments)


@LOOPBACK
def test_an_unreachable_api_is_a_typed_error() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(STACAPIError, match=f"127.0.0.1:{port}") as caught:
        search(f"http://127.0.0.1:{port}", tasks=["classification"])
    assert caught.value.status is None
