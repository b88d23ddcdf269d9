"""The README's provenance example runs as written and gives linked, valid revisions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

from mlm_export import validate_item

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_provenance_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    section = README.read_text().split("### Provenance, revisions and runtime", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    first, second = tmp_path / "runs/v1/item.json", tmp_path / "runs/v2/item.json"
    for path in (first, second):
        report = validate_item(path)
        assert report.valid, report.problems
    props = json.loads(first.read_text())["properties"]
    assert props["version"] == "1.0.0" and props["sci:doi"] == "10.5281/zenodo.1234567"
    assert isinstance(props["mlm:batch_size_suggestion"], int)
    links = {link["rel"]: link["href"] for link in json.loads(first.read_text())["links"]}
    assert links["successor-version"] == links["latest-version"] == "../v2/item.json"
    assets = json.loads(first.read_text())["assets"]
    assert assets["mlm:source_code"]["mlm:entrypoint"] == "torch.nn.modules.container:Sequential"


def test_readme_revisions_get_two_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v1 and v2 of the README's example have the same weights; the version makes their ids differ."""
    pytest.importorskip("torch")
    section = README.read_text().split("### Provenance, revisions and runtime", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("suggest_batch_size=True", "suggest_batch_size=False")  # not what this test is about
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    ids = []
    for version, tag in (("v1", "v1_0_0"), ("v2", "v1_1_0")):
        document = json.loads((tmp_path / "runs" / version / "item.json").read_text())
        weights = tmp_path / "runs" / version / Path(document["assets"]["model"]["href"]).name
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
        assert document["id"] == f"sequential-{digest}-{tag}"
        assert document["properties"]["mlm:name"] == f"sequential-{digest}"  # the model's name has no version
        ids.append(document["id"])
    assert ids[0] != ids[1]
