"""``mlm-export export/check`` flags: a complete Item from the CLI, usage errors exit 2, typed errors exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch_models as tm
from safetensors.torch import save_file

from mlm_export import export_item, save_item
from mlm_export.cli import main
from mlm_export.errors import ConfigurationError, UntrustedCodeError
from mlm_export.loading import check_item

EXTENT = ["--bbox", "0", "0", "1", "1", "--datetime", "2024-01-01T00:00:00Z"]
CLASS = ["--model-class", "torch_models:TinyConvNet"]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "weights.safetensors"
    save_file(tm.TinyConvNet().state_dict(), str(path))
    return path


def test_publisher_flags_make_a_complete_item(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = weights.parent / "new" / "dir" / "item.json"  # -o into a missing directory creates it
    code = main([
        "export", str(weights), *CLASS, "--input-shape", "[-1,4,64,64]", *EXTENT, "-o", str(out), "--json",
        "--license", "MIT", "--value-scaling", '[{"type": "scale", "value": 0.0001}]', "--resize-type", "none",
        "--none-applies", "pre_processing_function", "--no-pretrained", "--hyperparameters", '{"lr": 0.01}',
        "--link", "cite-as", "https://doi.org/10.0/x", "--collection", "models", "--tasks", "classification",
        "--allow-outside", str(weights.parent),
    ])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    saved = json.loads(out.read_text())
    assert printed == saved
    props = saved["properties"]
    assert props["license"] == "MIT"
    entry = props["mlm:input"][0]
    assert entry["value_scaling"] == [{"type": "scale", "value": 0.0001}]
    assert entry["resize_type"] is None and entry["pre_processing_function"] is None
    assert props["mlm:pretrained"] is False and props["mlm:pretrained_source"] is None
    assert props["mlm:hyperparameters"]["lr"] == 0.01
    assert props["mlm:hyperparameters"]["model_class"] == "torch_models:TinyConvNet"
    rels = {link["rel"]: link["href"] for link in saved["links"]}
    assert rels["cite-as"] == "https://doi.org/10.0/x"
    assert "collection" not in rels and "collection" not in saved  # new/collection.json does not exist
    assert "warning: The Item" in captured.err and "'models'" in captured.err
    assert main(["validate", str(out), "--allow-outside", str(weights.parent)]) == 0


def test_export_never_writes_an_item_validate_rejects(
    weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Catalogs layout (models/ and items/): refused before measuring, with the fixes; with
    --allow-outside the Item is written and validates under the same flag; --collection links only what exists."""
    monkeypatch.chdir(weights.parent)
    (weights.parent / "models").mkdir()
    weights.rename(weights.parent / "models" / "w.safetensors")
    base = ["export", "models/w.safetensors", *CLASS, "--input-shape=-1,4,64,64", *EXTENT, "--tasks", "classification"]
    assert main([*base, "-o", "items/x.json"]) == 1
    err = capsys.readouterr().err
    assert "error: Asset 'model' ('../models/w.safetensors') lies outside the directory of the Item" in err
    assert "--allow-outside" in err.split("hint: ", 1)[1] and not (weights.parent / "items").exists()
    assert main([*base, "-o", "items/x.json", "--allow-outside", "models", "--collection", "models"]) == 0
    assert "'../collection.json' does not exist" in capsys.readouterr().err
    assert main(["validate", "items/x.json"]) == 1  # the same rule: without the flag it points outside
    assert main(["validate", "items/x.json", "--allow-outside", "models"]) == 0
    assert main(["card", "items/x.json", "-o", "x.html", "--allow-outside", "models"]) == 0
    assert main([*base, "-o", "models/x.json"]) == 0  # beside the model: no flag needed
    assert main(["validate", "models/x.json"]) == 0


@pytest.mark.parametrize(
    "shape", [["--input-shape=-1,4,64,64"], ["--input-shape", "=-1,4,64,64"], ["--input-shape", "-1", "4", "64", "64"]]
)
def test_input_shape_spellings(weights: Path, shape: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(weights), *CLASS, *shape, "--no-probe", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["inputs"][0]["shape"] == [-1, 4, 64, 64]


@pytest.mark.parametrize(
    "bad",
    [["--model-kwargs", "{bad"], ["--model-kwargs", "[1]"], ["--input-shape=-1,a,64"], ["--input-dtype", "floaty"],
     ["--hyperparameters", "1"]],
)  # fmt: skip
def test_usage_errors_exit_two_before_loading(weights: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", str(weights), *CLASS, *bad, "-o", str(weights.parent / "x.json")])
    assert info.value.code == 2
    assert not (weights.parent / "x.json").exists()


def test_debug_keeps_exit_one_and_hints_name_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "module.pt"
    torch.save(tm.TinyMLP(), path)  # a pickled module needs --trust-pickle
    assert main(["--debug", "inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err  # --debug shows it, but the error is still a reported one
    hint = next(line for line in err.splitlines() if line.startswith("hint: "))
    assert "--trust-pickle" in hint and "trust_pickle=True" not in hint


def _raising(**kwargs: object) -> torch.nn.Module:
    from urllib.error import URLError

    raise URLError("offline: cannot download the backbone")


def test_model_class_that_raises_is_a_reported_error(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigurationError, match="model_class _raising raised URLError.*offline"):
        export_item(weights, model_class=_raising)
    code = main(["inspect", str(weights), "--model-class", "torchvision.models:resnet18",
                 "--model-kwargs", '{"weights": "NOT_A_WEIGHT"}'])  # fmt: skip
    assert code == 1
    assert "model_class resnet18 raised" in capsys.readouterr().err


def test_check_uses_the_recorded_class_only_with_trust_code(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item = export_item(weights, model_class="torch_models:TinyConvNet", model_kwargs={"in_channels": 4},
                       bbox=[0, 0, 1, 1], datetime="2024-01-01T00:00:00Z")  # fmt: skip
    assert item.properties["mlm:hyperparameters"]["model_kwargs"] == {"in_channels": 4}
    path = save_item(item, weights.parent / "item.json")
    with pytest.raises(UntrustedCodeError, match="torch_models:TinyConvNet"):
        check_item(path)
    assert check_item(path, trust_code=True).ok
    assert main(["check", str(path)]) == 1
    assert "--trust-code" in capsys.readouterr().err
    assert main(["check", str(path), "--trust-code"]) == 0


def test_output_directory_is_checked_before_the_dry_run(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = weights.parent / "file"
    blocker.write_text("x")
    argv = ["export", str(weights), "-o", str(blocker / "item.json"), "--allow-outside", str(weights.parent)]
    assert main(argv) == 1  # no --model-class: would fail later
    err = capsys.readouterr().err
    assert "a parent is a file" in err and "model_class" not in err and "--model-class" not in err


def test_missing_datetime_is_said_in_the_cli_output(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = weights.parent / "item.json"
    assert main(["export", str(weights), *CLASS, "--bbox", "0", "0", "1", "1", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning: No datetime")]
    assert len(warned) == 1 and "--datetime" in warned[0]  # once, naming the flag that sets it


SLOW_MODEL = '''
import time
import torch
from torch import nn


class SlowNet(nn.Module):
    """A classifier whose forward takes a second: its dry-run is slow enough to be interrupted."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(1.0)
        return self.linear(x)
'''


def test_ctrl_c_during_export_leaves_no_directory_it_created(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import save_file as save

    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    save({"linear.weight": torch.zeros(2, 4), "linear.bias": torch.zeros(2)}, str(tmp_path / "slow.safetensors"))
    import mlm_export

    package_root = Path(mlm_export.__file__).resolve().parents[1]  # the code under test, wherever it is
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), str(tmp_path)])}
    out = tmp_path / "out" / "nested"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlm_export", "export", "slow.safetensors", "--model-class", "slow_model:SlowNet",
         "--input-shape=-1,4", "--allow-outside", str(tmp_path), "-o", str(out / "item.json")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not out.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.is_dir(), process.communicate(timeout=60)  # the run made out/nested/ before its dry-run
    time.sleep(1.5)  # inside the dry-run now (each forward sleeps a second)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert not (tmp_path / "out").exists()  # both directories the run created are gone
    assert {p.name for p in tmp_path.iterdir()} - {"__pycache__"} == {"slow.safetensors", "slow_model.py"}


def test_a_failed_export_keeps_directories_it_did_not_create(weights: Path) -> None:
    kept = weights.parent / "kept"
    kept.mkdir()
    assert main(["export", str(weights), "-o", str(kept / "new" / "item.json")]) == 1  # no --model-class
    assert kept.is_dir() and not (kept / "new").exists()
