"""mlm:container: OCI references checked for shape (never pulled); validate and catalog treat them as remote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mlm_export import build_catalog, export_item, save_item, validate_item  # noqa: E402
from mlm_export.errors import ConfigurationError  # noqa: E402
from mlm_export.provenance.container import (  # noqa: E402
    CONTAINER_KEY,
    OCI_MEDIA_TYPE,
    is_registry_reference,
    parse_container,
)

DIGEST = "sha256:" + "a1" * 32


@pytest.mark.parametrize(
    ("reference", "href"),
    [
        ("ghcr.io/org/model:1.0", "ghcr.io/org/model:1.0"),
        ("localhost:5000/team/seg-net:v2", "localhost:5000/team/seg-net:v2"),
        (f"quay.io/a/b@{DIGEST}", f"quay.io/a/b@{DIGEST}"),
        (f"ghcr.io/a/b:1.2@{DIGEST}", f"ghcr.io/a/b:1.2@{DIGEST}"),
        ("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"),
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
    ],
)
def test_references_follow_the_oci_grammar(reference: str, href: str) -> None:
    assert parse_container(reference).href == href


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("ghcr.io/org/model", "neither a tag nor a digest"),
        ("https://ghcr.io/org/model:1", "is a URL"),
        ("ghcr.io/Org/Model:1", "OCI reference grammar"),
        ("MyOrg/model:1", "lower case"),
        ("ghcr.io/org/model:", "OCI reference grammar"),
        ("ghcr.io/org/model@sha256:abc", "OCI reference grammar"),
        ("ghcr.io/org/model:has space", "OCI reference grammar"),
        ("", "not an image reference"),
        ("ghcr.io/" + "a" * 260 + ":1", "over 255"),
    ],
)
def test_malformed_references_are_refused(reference: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as excinfo:
        parse_container(reference)
    assert excinfo.value.hint


def test_container_asset_validates_and_is_treated_as_remote(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    item = export_item(
        model, input_shape=[-1, 4], tasks=["regression"], artifact_dir=tmp_path / "a", container="ghcr.io/org/m:1.0"
    )
    path = save_item(item, tmp_path / "a" / "item.json")
    document = json.loads(path.read_text())
    asset = document["assets"][CONTAINER_KEY]
    assert asset["href"] == "ghcr.io/org/m:1.0"  # kept as a registry reference, not made into a path
    assert asset["type"] == OCI_MEDIA_TYPE and asset["roles"] == ["runtime", "mlm:inference-runtime"]
    assert is_registry_reference(asset)
    # check_files: the reference is not taken for a missing local file 'ghcr.io/org/m:1.0'.
    report = validate_item(path)
    assert report.valid, report.problems
    build_catalog([path], tmp_path / "catalog")
    (written,) = [p for p in (tmp_path / "catalog").rglob("*.json") if p.name != "collection.json"]
    assert json.loads(written.read_text())["assets"][CONTAINER_KEY]["href"] == "ghcr.io/org/m:1.0"


def test_a_malformed_container_fails_before_the_dry_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="container="):
        export_item(torch.nn.Linear(2, 2), input_shape=[-1, 2], artifact_dir=tmp_path, container="not a ref")
    assert not any(tmp_path.iterdir())
