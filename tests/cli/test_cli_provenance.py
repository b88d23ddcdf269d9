"""``mlm-export export`` provenance flags on a real TorchScript file: container, version chain, DOI, batch size."""

from __future__ import annotations

import json
from pathlib import Path

import pystac  # noqa: F401 - imported at collection: its urllib3 import probes IPv6 with a socket
import pytest

torch = pytest.importorskip("torch")

from mlm_export.cli import main  # noqa: E402
from mlm_export.cli.provenance import memory_size  # noqa: E402


@pytest.fixture
def scripted(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))).save(str(path))
    return path


def test_export_flags_write_provenance(scripted: Path, tmp_path: Path) -> None:
    first = tmp_path / "v1.json"
    base = [str(scripted), "--input-shape=-1,6", "--tasks", "regression"]
    assert main(["export", *base, "-o", str(first), "--container", "ghcr.io/org/net:1.0", "--version", "1",
                 "--doi", "https://doi.org/10.5281/zenodo.42", "--publication", "10.48550/arXiv.2211.07044",
                 "--suggest-batch-size", "--memory-budget", "1GiB"]) == 0  # fmt: skip
    second = tmp_path / "v2.json"
    assert main(["export", *base, "-o", str(second), "--version", "2", "--previous", str(first)]) == 0
    props = json.loads(first.read_text())["properties"]
    assert props["version"] == "1" and props["sci:doi"] == "10.5281/zenodo.42"
    assert props["sci:publications"] == [{"doi": "10.48550/arXiv.2211.07044"}]
    assert props["mlm:batch_size_suggestion"] in {int(b) for b in props["mlm:hyperparameters"]["batch_size.throughput"]}
    assert props["mlm:hyperparameters"]["batch_size.memory_budget"] == 2**30
    assert json.loads(first.read_text())["assets"]["mlm:container"]["href"] == "ghcr.io/org/net:1.0"
    links = {link["rel"]: link["href"] for link in json.loads(first.read_text())["links"]}
    assert links["successor-version"] == links["latest-version"] == "./v2.json"
    assert main(["validate", str(first)]) == 0 and main(["validate", str(second)]) == 0


def test_malformed_container_is_a_reported_error(
    scripted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", str(scripted), "--input-shape=-1,6", "-o", str(tmp_path / "i.json"),
                 "--container", "https://ghcr.io/x"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "--container 'https://ghcr.io/x'" in err and "registry/name:tag" in err


@pytest.mark.parametrize(("text", "size"), [("8GiB", 8 * 2**30), ("512MB", 512 * 10**6), ("1000", 1000)])
def test_memory_sizes(text: str, size: int) -> None:
    assert memory_size(text) == size


def test_bad_memory_budget_is_a_usage_error(scripted: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["export", str(scripted), "-o", str(tmp_path / "i.json"), "--memory-budget", "lots"])
    assert excinfo.value.code == 2


def test_source_code_flag_writes_the_asset_and_a_bad_one_is_reported(
    scripted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://github.com/org/net/tree/0123456789abcdef0123456789abcdef01234567/net"
    base = ["export", str(scripted), "--input-shape=-1,6", "--tasks", "regression"]
    assert main([*base, "-o", str(tmp_path / "i.json"), "--source-code", url]) == 0
    asset = json.loads((tmp_path / "i.json").read_text())["assets"]["mlm:source_code"]
    assert asset["href"] == url and asset["type"] == "text/html" and "code" in asset["roles"]
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "j.json"), "--source-code", "github.com/org/net"]) == 1
    err = capsys.readouterr().err
    assert "--source-code 'github.com/org/net' is not an http(s) URL" in err and "hint:" in err
    assert not (tmp_path / "j.json").exists()
