"""The search / publish / serve-api commands and the STAC API demo, against the local server on loopback."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from local_stac import LOOPBACK, GatedProxy
from test_collection import EXAMPLES

from mlm_export.cli import main
from mlm_export.stac.local_api import LocalSTACAPI

pytestmark = LOOPBACK
REPO = Path(__file__).resolve().parents[2]


def test_publish_then_search_the_api(stac_api: LocalSTACAPI, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in EXAMPLES]
    assert main(["publish", *files, "--to", stac_api.url, "--collection", "cli", "--no-progress"]) == 0
    assert f"published {len(files)} item(s) to {stac_api.url}/collections/cli (created)" in capsys.readouterr().out
    assert main(["search", stac_api.url, "--collections", "cli", "--task", "segmentation", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in hits] == ["pytorch_geo_unet"]  # the one segmentation example
    assert main(["search", *files, "--filter", "\"mlm:framework\" = 'pytorch'", "--limit", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) <= 1


def test_cli_errors_are_one_line_and_exit_1(stac_api: LocalSTACAPI, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(EXAMPLES[0])]
    assert main(["publish", *files, "--to", stac_api.url, "--collection", "cli-errors", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["publish", *files, "--to", stac_api.url, "--collection", "cli-errors"]) == 1
    err = capsys.readouterr().err
    assert "409" in err and "hint:" in err and "--if-exists" in err
    with GatedProxy(stac_api.url, token="t0ken-value") as proxy:
        code = main(
            ["publish", *files, "--to", proxy.url, "--collection", "x", "--header", "Authorization: Bearer bad-t0ken"]
        )
        assert code == 1
    err = capsys.readouterr().err
    assert "403" in err and "bad-t0ken" not in err
    assert main(["search", str(EXAMPLES[0]), str(EXAMPLES[1]), "--filter", '"a" === 1']) == 1
    assert "1:6" in capsys.readouterr().err
    assert main(["publish", *files, "--to", stac_api.url, "--collection", "x", "--header", "no colon"]) == 1


def test_serve_api_runs_until_interrupted(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    data = Path(tempfile.mkdtemp(prefix="mlm-serve-api-test-"))
    data.chmod(0o755)  # under /tmp: reachable by the postgres user
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen(
        [sys.executable, "-m", "mlm_export", "serve-api", "--url-file", str(url_file), "--data-dir", str(data / "db")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not url_file.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.2)
        assert url_file.exists(), server.stdout.read() if server.poll() is not None else "no URL within 120 s"
        url = url_file.read_text().strip()
        assert httpx.get(f"{url}/collections").status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    try:
        assert server.returncode == 0, output
        assert "STAC API (stac-fastapi-pgstac, Transactions on) at http://127.0.0.1:" in output
        assert (data / "db" / "pgdata" / "PG_VERSION").is_file()  # kept: --data-dir
        assert not (data / "db" / "pgdata" / "postmaster.pid").exists()  # PostgreSQL stopped
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_stac_demo_publishes_finds_loads_and_checks(
    tmp_path: Path, stac_api: LocalSTACAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo serves its artifacts over loopback HTTP: the API Item's model goes through the verified cache."""
    from mlm_export.stac_demo import COLLECTION_ID, run

    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(tmp_path / "cache"))
    href = run(tmp_path / "demo", stac_api.url)
    assert href == f"{stac_api.url}/collections/{COLLECTION_ID}/items/resnet18-sentinel2-demo"  # the demo's item_id
    stored = httpx.get(href).json()
    model = next(a for a in stored["assets"].values() if "mlm:model" in a["roles"])
    assert model["href"].startswith("http://127.0.0.1:") and model["href"].endswith(".safetensors")
    assert model["file:checksum"] in {p.name for p in (tmp_path / "cache").iterdir()}  # downloaded, verified


def _readme_stac_commands() -> list[list[str]]:
    """The commands of the README's STAC API block (continuation lines joined, comments dropped)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = "make stac-api" + readme.split("```bash\nmake stac-api", 1)[1].split("```", 1)[0]
    return [words for line in block.replace("\\\n", " ").splitlines() if (words := shlex.split(line, comments=True))]


def test_the_readme_stac_api_commands_run(
    tmp_path: Path, stac_api: LocalSTACAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its mlm-export lines, on the demo Item, against the test's API in place of the one make stac-api starts."""
    from mlm_export.demo import run as export_demo

    commands = _readme_stac_commands()
    assert [c for c in commands if c[0] == "make"] == [["make", "stac-api", "PORT=8082"], ["make", "stac-demo"]]
    monkeypatch.chdir(tmp_path)
    export_demo(Path("demo-output"))
    capsys.readouterr()
    outputs = []
    for words in (c for c in commands if c[0] == "mlm-export"):
        assert main([w.replace("http://127.0.0.1:8082", stac_api.url) for w in words[1:]]) == 0, words
        outputs.append(capsys.readouterr().out)
    assert outputs[0].startswith(f"published 1 item(s) to {stac_api.url}/collections/models"), outputs
    hits = [line.split() for line in outputs[1].splitlines() if line[:1].isdigit()]
    assert "resnet18-sentinel2-demo" in [words[2] for words in hits], outputs[1]  # (the API is shared by tests)
    stored = httpx.get(f"{stac_api.url}/collections/models/items/resnet18-sentinel2-demo").json()
    model = next(a for a in stored["assets"].values() if "mlm:model" in a["roles"])
    assert model["href"].startswith("https://example.com/models/")


def test_make_stac_demo_recipe_runs(tmp_path: Path) -> None:
    """The Makefile's stac-demo recipe as it is written, starting its own local STAC API."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nstac-demo:", 1)[1].splitlines()[1].strip()
    assert recipe == "$(BIN)/python -m mlm_export.stac_demo --output demo-output"
    command = [sys.executable, *shlex.split(recipe)[1:]]
    env = dict(os.environ, PYTHONPATH=str(REPO), MLM_EXPORT_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "check_item:  outputs match (Item read from the STAC API)" in result.stdout
    assert (tmp_path / "demo-output" / "item.json").is_file()
