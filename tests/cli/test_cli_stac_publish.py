"""mlm-export publish DIR|catalog.json|ITEM...: folders and catalogs walked, a progress bar on a terminal only."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from local_stac import LOOPBACK
from terminal import run_on_terminal
from test_publish_stream import small_items

from mlm_export.cli import main
from mlm_export.stac.collection import build_catalog
from mlm_export.stac.local_api import LocalSTACAPI

pytestmark = LOOPBACK
REPO = Path(__file__).resolve().parents[2]


def _folder(directory: Path, count: int, prefix: str) -> list[str]:
    directory.mkdir(parents=True)
    ids = []
    for item in small_items(count, prefix):
        (directory / f"{item['id']}.json").write_text(json.dumps(item))
        ids.append(item["id"])
    (directory / "notes.json").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    return ids


def _stored(api: LocalSTACAPI, collection: str) -> list[str]:
    answer = httpx.get(f"{api.url}/collections/{collection}/items", params={"limit": 1000}).json()
    return sorted(f["id"] for f in answer["features"])


def test_publish_a_folder_a_catalog_and_items(
    tmp_path: Path, stac_api: LocalSTACAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _folder(tmp_path / "folder", 5, "cli-folder")
    assert main(["publish", str(tmp_path / "folder"), "--to", stac_api.url, "--collection", "cli-folder", "-q"]) == 0
    assert f"published 5 item(s) to {stac_api.url}/collections/cli-folder (created)" in capsys.readouterr().out
    assert _stored(stac_api, "cli-folder") == ids
    items = list(small_items(4, "cli-catalog"))
    build_catalog(items, tmp_path / "cat", validate=False)
    single = tmp_path / "single.json"
    single.write_text(json.dumps(next(small_items(1, "cli-single"))))
    arguments = [str(tmp_path / "cat" / "collection.json"), str(single)]
    assert main(["publish", *arguments, "--to", stac_api.url, "--collection", "cli-catalog", "--quiet"]) == 0
    assert "published 5 item(s)" in capsys.readouterr().out
    assert _stored(stac_api, "cli-catalog") == sorted([*(i["id"] for i in items), "cli-single-00000"])
    assert main(["publish", str(tmp_path / "folder"), "--to", stac_api.url, "--collection", "cli-folder",
                 "--if-exists", "skip", "-q"]) == 0  # fmt: skip
    assert "skipped 5 already there: cli-folder-00000" in capsys.readouterr().out


def test_the_progress_bar_shows_items_per_second_on_a_terminal_only(tmp_path: Path, stac_api: LocalSTACAPI) -> None:
    _folder(tmp_path / "folder", 3, "cli-bar")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "COLUMNS": "160",
           "TERM": "xterm"}  # fmt: skip
    command = [sys.executable, "-m", "mlm_export", "publish", str(tmp_path / "folder"), "--to", stac_api.url]
    code, shown = run_on_terminal([*command, "--collection", "cli-bar"], env)
    assert code == 0, shown
    assert "publish to cli-bar" in shown and "3Item" in shown.replace(" ", "")  # how many were sent: unknown ahead
    assert "Item/s" in shown and "published 3 item(s)" in shown
    code, quiet = run_on_terminal([*command, "--collection", "cli-bar-quiet", "--quiet"], env)
    assert code == 0 and "Item/s" not in quiet and "published 3 item(s)" in quiet
