"""Issue 11.2-11.4 and 11.14: an Item cannot make mlm-export read, hash, fetch or write outside its place.

Schema URLs that climb out of the schema directory or use ``file:``/``http:``; local hrefs that escape the Item's
directory (``..``, absolute, ``file://``, a symlink); model assets without a checksum; non-regular files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
import torch_models as tm
from factories import item_dict
from torch import nn

from mlm_export import export_item, inspect_model, save_item, validate_item
from mlm_export.errors import (
    ArtifactLoadError,
    ArtifactNotFoundError,
    ItemValidationError,
    SchemaNotFoundError,
    UnverifiedArtifactError,
)
from mlm_export.loading import check_item, load_model
from mlm_export.stac.schemas import SchemaStore

SECRET = {"$id": "secret", "description": "TOP-SECRET-CONTENT", "type": "object", "required": ["nope"]}


def _secret(tmp: Path) -> Path:
    folder = tmp / "srv" / "private"
    folder.mkdir(parents=True)
    path = folder / "secret.json"
    path.write_text(json.dumps(SECRET), encoding="utf-8")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlm_export", *args], capture_output=True, text=True, timeout=300, check=False
    )


# --- 2. schema URLs ----------------------------------------------------------------------------------------------


def _schema_copy(tmp: Path, schema_dir: Path) -> Path:
    target = tmp / "schemas"
    shutil.copytree(schema_dir, target)
    return target


def test_schema_url_climbing_out_of_the_directory_is_not_read(tmp_path: Path, schema_dir: Path) -> None:
    secret = _secret(tmp_path)
    store_dir = _schema_copy(tmp_path, schema_dir)
    climb = "/".join([".."] * (len(store_dir.resolve().parts) + 2))
    url = f"https://schemas.stacspec.org/{climb}{secret.resolve()}"
    assert (store_dir / url.split("://", 1)[1]).resolve() == secret.resolve()  # the attack reaches the file
    doc = item_dict(tmp_path)
    doc["stac_extensions"].append(url)
    report = validate_item(doc, store_dir)
    text = json.dumps(report.to_dict())
    assert "TOP-SECRET-CONTENT" not in text and "nope" not in text
    assert any("outside the schema directory" in p.message for p in report.problems)


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_non_https_schema_urls_are_not_read(tmp_path: Path, schema_dir: Path, scheme: str) -> None:
    secret = _secret(tmp_path)
    url = f"file://{secret}" if scheme == "file" else "http://127.0.0.1:8765/../../../srv/www/pwn.json"
    doc = item_dict(tmp_path)
    doc["stac_extensions"].append(url)
    report = validate_item(doc, _schema_copy(tmp_path, schema_dir))
    assert "TOP-SECRET-CONTENT" not in json.dumps(report.to_dict())
    (problem,) = report.problems
    assert "not an https URL" in problem.message


def test_cache_never_fetches_http_nor_writes_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In download mode an http URL with '..' is neither fetched nor written anywhere."""
    monkeypatch.delenv("MLM_EXPORT_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fetched: list[str] = []

    def record(url: str, timeout: float) -> Any:
        fetched.append(url)
        raise OSError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", record)
    store = SchemaStore()
    for url in ["http://127.0.0.1:8765/../../../srv/www/pwn.json", "https://example.org/../../../../../tmp/pwn.json"]:
        with pytest.raises(SchemaNotFoundError):
            store.load(url)
    assert fetched == []
    assert not list(tmp_path.rglob("pwn.json"))


def test_meta_schemas_come_bundled(tmp_path: Path) -> None:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    store = SchemaStore(empty)
    assert store.load("http://json-schema.org/draft-07/schema#")["$id"] == "http://json-schema.org/draft-07/schema#"
    assert "2020-12" in store.load("https://json-schema.org/draft/2020-12/schema")["$id"]


def test_index_entry_outside_the_directory_is_refused(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    (store_dir / "INDEX.json").write_text(json.dumps({"https://x.org/s.json": str(secret)}), encoding="utf-8")
    with pytest.raises(SchemaNotFoundError, match="outside the schema directory"):
        SchemaStore(store_dir).load("https://x.org/s.json")


# --- 3. local hrefs ----------------------------------------------------------------------------------------------


def _published(tmp: Path) -> Path:
    """A real exported Item (TorchScript, so no model_class is needed) saved next to its artifact."""
    folder = tmp / "published"
    folder.mkdir()
    item = export_item(tm.LinearNet().eval(), artifact_dir=folder, artifact_format="torchscript", input_shape=(-1, 3))
    path = folder / "item.json"
    save_item(item, path)
    return path


def _escaping_hrefs(tmp: Path, item_path: Path, victim: Path) -> dict[str, str]:
    link = item_path.parent / "innocent.pt"
    link.symlink_to(victim)
    return {
        "dotdot": os.path.relpath(victim, item_path.parent),
        "absolute": str(victim),
        "file-url": victim.as_uri(),
        "symlink": "./innocent.pt",
    }


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "file-url", "symlink"])
def test_hrefs_escaping_the_item_are_never_read(tmp_path: Path, schema_dir: Path, kind: str) -> None:
    victim = tmp_path / "home" / "passwd"
    victim.parent.mkdir()
    victim.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    item_path = _published(tmp_path)
    doc = json.loads(item_path.read_text(encoding="utf-8"))
    doc["assets"]["model"]["href"] = _escaping_hrefs(tmp_path, item_path, victim)[kind]
    doc["assets"]["model"]["file:size"] = 1
    item_path.write_text(json.dumps(doc), encoding="utf-8")

    report = validate_item(item_path, schema_dir)
    text = json.dumps(report.to_dict())
    assert not report.valid and "points outside" in text
    assert digest not in text and str(victim.stat().st_size) not in text
    with pytest.raises(ItemValidationError, match="points outside") as info:
        load_model(item_path)
    assert digest not in str(info.value)
    result = _cli("check", str(item_path))
    assert result.returncode == 1 and "points outside" in result.stderr and digest not in result.stderr

    allowed = validate_item(item_path, schema_dir, allow_outside=[victim.parent])
    assert any(p.path == "/assets/model/file:size" for p in allowed.problems)  # now it was opened and measured
    result = _cli("validate", "--allow-outside", str(victim.parent), str(item_path))
    assert result.returncode == 1 and "file:size" in result.stdout


def test_published_item_round_trips(tmp_path: Path, schema_dir: Path) -> None:
    item_path = _published(tmp_path)
    assert validate_item(item_path, schema_dir).valid
    report = check_item(item_path)
    assert report.ok, str(report)


# --- 4. unverifiable model assets --------------------------------------------------------------------------------


def test_model_without_checksum_refused_unless_no_verify(tmp_path: Path) -> None:
    item_path = _published(tmp_path)
    doc = json.loads(item_path.read_text(encoding="utf-8"))
    model = doc["assets"]["model"]
    artifact = item_path.parent / model["href"]
    del model["file:checksum"], model["file:size"]
    item_path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.warns(FutureWarning):
        swapped = torch.jit.trace(nn.Linear(3, 2).eval(), torch.randn(1, 3))
    torch.jit.save(swapped, artifact)  # the swap the checksum would have caught

    with pytest.raises(UnverifiedArtifactError, match="no sha2-256 file:checksum") as info:
        load_model(item_path)
    assert "verify=False" in (info.value.hint or "")
    result = _cli("check", str(item_path))
    assert result.returncode == 1 and "--no-verify" in result.stderr
    module = load_model(item_path, verify=False)
    assert isinstance(module, nn.Module)
    assert _cli("check", "--no-verify", str(item_path)).returncode == 0


# --- 14. non-regular files, file:size type -----------------------------------------------------------------------


def test_fifo_model_and_directory_href(tmp_path: Path, schema_dir: Path) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactLoadError, match="not a regular file"):
        inspect_model(fifo)
    item_path = _published(tmp_path)
    doc = json.loads(item_path.read_text(encoding="utf-8"))
    (item_path.parent / "folder.pt").mkdir()
    doc["assets"]["model"]["href"] = "./folder.pt"
    item_path.write_text(json.dumps(doc), encoding="utf-8")
    report = validate_item(item_path, schema_dir)
    assert [p.message for p in report.problems if p.path == "/assets/model/href"][0].startswith(
        "'./folder.pt' is not a regular file"
    )
    with pytest.raises(ArtifactLoadError, match="not a regular file"):
        load_model(item_path)


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_remote_item_cannot_name_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote Item never makes mlm-export read a local file, and its JSON is read strictly."""
    from loopback import LoopbackServer

    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(tmp_path / "cache"))
    item_path = _published(tmp_path)
    artifact = (item_path.parent / json.loads(item_path.read_text())["assets"]["model"]["href"]).resolve()
    site = tmp_path / "site"
    site.mkdir()
    # file:// is local: refused. An absolute path is a path on the Item's server: fetched there (404), never read here.
    for href, error, words in [(artifact.as_uri(), ItemValidationError, "may not name local files"),
                               (str(artifact), ArtifactNotFoundError, "HTTP 404")]:  # fmt: skip
        doc = json.loads(item_path.read_text(encoding="utf-8"))
        doc["assets"]["model"]["href"] = href
        (site / "item.json").write_text(json.dumps(doc), encoding="utf-8")
        with LoopbackServer(site) as server, pytest.raises(error, match=words):
            load_model(f"{server.url}/item.json")
    (site / "item.json").write_text('{"type": "Feature", "id": "a", "id": "b"}', encoding="utf-8")
    with LoopbackServer(site) as server, pytest.raises(ItemValidationError, match="duplicate key"):
        load_model(f"{server.url}/item.json")


def test_validate_treats_a_dict_with_a_remote_self_link_as_remote(tmp_path: Path) -> None:
    """One rule: a dict whose self link is a URL may not make validate hash a local file (its digest never shown)."""
    secret = tmp_path / "id_rsa"
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    document = item_dict(tmp_path)
    next(iter(document["assets"].values()))["href"] = secret.as_uri()
    document["links"] = [{"rel": "self", "href": "http://127.0.0.1:9/collections/c/items/x"}]
    report = validate_item(document)
    text = "\n".join(f"{p.path}: {p.message}" for p in report.problems)
    assert not report.valid and "points outside" in text and digest not in text
