"""The local STAC API registers the MLM queryables at start-up: /queryables lists them with their types, and a
cql2-json filter on them runs in the server, numbers compared as numbers (issue 23, point 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_stac import LOOPBACK
from test_collection import factory_items

from mlm_export.stac.local_api import QUERYABLES_FILE, LocalSTACAPI
from mlm_export.stac.publish import publish
from mlm_export.stac.search import search

COLLECTION = "queryables"
#: item name -> mlm:total_parameters (9 < 100 < 150 < 1200, but as text "9" > "150" > "1200" > "100")
PARAMETERS = {"alps": 9, "alps-rgb": 150, "europe": 1200}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, schema_dir: Path, stac_api: LocalSTACAPI) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("queryables")
    files, documents = [], {}
    for document in factory_items(root / "models"):
        if document["id"] not in PARAMETERS:
            continue
        document["properties"]["mlm:total_parameters"] = PARAMETERS[document["id"]]
        path = root / "models" / f"{document['id']}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        files.append(path)
        documents[document["id"]] = document
    publish(files, stac_api.url, COLLECTION, href_base="https://models.example.com/q", schema_dir=schema_dir,
            progress=False)  # fmt: skip
    return documents


@LOOPBACK
def test_queryables_list_the_mlm_fields_with_their_types(stac_api: LocalSTACAPI, published: dict[str, Any]) -> None:
    expected = json.loads(QUERYABLES_FILE.read_text(encoding="utf-8"))["properties"]
    assert {"mlm:tasks", "mlm:framework", "mlm:architecture", "mlm:total_parameters", "mlm:pretrained",
            "mlm:accelerator", "mlm:name"} <= set(expected)  # fmt: skip
    for path in ("/queryables", f"/collections/{COLLECTION}/queryables"):
        answer = httpx.get(stac_api.url + path, timeout=30)
        assert answer.status_code == 200, answer.text
        properties = answer.json()["properties"]
        assert {"id", "datetime", "geometry"} <= set(properties)
        for name, definition in expected.items():
            assert properties[name]["type"] == definition["type"], (path, name)
        assert properties["mlm:total_parameters"]["type"] == "integer"
        assert properties["mlm:tasks"]["items"]["enum"][:2] == ["regression", "classification"]


@LOOPBACK
def test_a_cql2_json_filter_runs_in_the_server(stac_api: LocalSTACAPI, published: dict[str, Any]) -> None:
    def ids(filter_: dict[str, Any]) -> list[str]:
        body = {"collections": [COLLECTION], "filter-lang": "cql2-json", "filter": filter_, "limit": 50}
        answer = httpx.post(stac_api.url + "/search", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return sorted(f["id"] for f in answer.json()["features"])

    frameworks = {i: d["properties"]["mlm:framework"] for i, d in published.items()}
    assert sorted(set(frameworks.values())) == ["PyTorch", "TensorFlow"]
    assert ids({"op": "=", "args": [{"property": "mlm:framework"}, "TensorFlow"]}) == ["europe"]
    assert ids({"op": ">", "args": [{"property": "mlm:total_parameters"}, 100]}) == ["alps-rgb", "europe"]
    assert ids({"op": "<", "args": [{"property": "mlm:total_parameters"}, 1000]}) == ["alps", "alps-rgb"]
    tasks = {"op": "a_contains", "args": [{"property": "mlm:tasks"}, ["semantic-segmentation"]]}
    assert ids(tasks) == ["europe"]
    # search() against the API agrees with the server's filter
    hits = search(stac_api.url, filter='"mlm:total_parameters" > 100', collections=[COLLECTION])
    assert sorted(h.id for h in hits) == ["alps-rgb", "europe"]
