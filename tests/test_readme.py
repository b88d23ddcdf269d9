"""Every README code example runs as written (issue 12, point 21).

The blocks are extracted from README.md and run in order in one temporary directory: Python blocks with this
interpreter, bash blocks with ``mlm-export`` on the PATH. Names a block leaves to the reader (``module``,
``datamodule``, ``task``, ``dm``, said so in the text before it) come from a prelude; the block's own lines run
verbatim. Blocks that start servers or the whole suite are listed in NOT_RUN with the test that covers them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)

#: First line of a block -> why it is not run here (and where it is covered).
NOT_RUN = {
    "make demo": "runs the demo/whole suite (make demo is the demo job; make test runs this file)",
    "make stac-api": "starts PostgreSQL and a STAC API server (tests/test_cli_stac.py, tests/stac/test_publish.py)",
    ".venv/bin/python benchmarks/run.py": "the benchmark run (tests/test_benchmarks.py)",
    "from mlm_export.card import": "the model-card example (run by tests/test_cli_card.py)",
    "mlm-export card item.json": "the model-card commands (tests/test_cli_card.py, tests/card/)",
    "mlm-export form": "starts the form's server until Ctrl-C (tests/cli/test_form.py, tests/form/)",
    "mlm-export catalog items/*.json -o catalog/ --allow-outside": "the Catalogs section (its own README test)",
    "import torch\nfrom mlm_export import export_item, save_item": (
        "the provenance example (tests/provenance/test_readme_provenance.py)"
    ),
    "import json": "remote artifacts against a URL and a bucket (run by tests/test_transfer.py on loopback servers)",
}

#: Names the text before a block leaves to the reader -> code defining them.
PRELUDES = {
    "trainer.fit(module, datamodule)": """
        import torch
        from lightning.pytorch import LightningDataModule, LightningModule
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        class Module(LightningModule):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                         nn.Linear(4, 2))
                self.example_input_array = torch.zeros(1, 3, 16, 16)
            def forward(self, x):
                return self.net(x)
            def training_step(self, batch, batch_idx):
                return nn.functional.cross_entropy(self(batch[0]), batch[1])
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        class Data(LightningDataModule):
            def train_dataloader(self):
                g = torch.Generator().manual_seed(0)
                return DataLoader(TensorDataset(torch.rand(4, 3, 16, 16, generator=g), torch.tensor([0, 1, 0, 1])),
                                  batch_size=2)

        module, datamodule = Module(), Data()
    """,
    "export_torchgeo(task, datamodule=dm": """
        from pathlib import Path
        from geodata import SynthDataModule, write_scene
        from torchgeo.trainers import SemanticSegmentationTask

        write_scene(Path("scene"))
        dm = SynthDataModule(Path("scene"))
        dm.setup("fit")
        task = SemanticSegmentationTask(model="unet", backbone="resnet18", in_channels=4, num_classes=3)
    """,
}


def readme_blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer((REPO / "README.md").read_text())]


def test_every_block_is_run_or_listed() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 5
    for _language, code in blocks:
        first = code.strip().splitlines()[0]
        assert any(first.startswith(key) for key in NOT_RUN) or "mlm-export" in code or "import" in code, first


def _environment(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mlm-export"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m mlm_export "$@"\n')
    script.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}


@pytest.mark.slow
def test_readme_examples_run_verbatim(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = _environment(tmp_path)
    ran = 0
    for language, code in readme_blocks():
        if any(code.strip().startswith(key) for key in NOT_RUN):
            continue
        if language == "python":
            prelude = next((textwrap.dedent(p) for key, p in PRELUDES.items() if key in code), "")
            command = [sys.executable, "-c", prelude + "\n" + code]
        else:
            command = ["bash", "-e", "-o", "pipefail", "-c", code]
            if "demo-output/" in code and not (work / "demo-output").exists():  # the text says: after make demo
                demo = [sys.executable, "-m", "mlm_export.demo", "--output", "demo-output"]
                subprocess.run(demo, cwd=work, env=env, capture_output=True, text=True, timeout=900, check=True)
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, (
            f"README block failed:\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        ran += 1
    assert ran == 5  # Python quickstart, command line, Lightning callback, torchgeo, predict on the demo's scene
    assert (work / "catalog" / "collection.json").is_file()
    assert (work / "published" / "item.json").is_file()
    # The command-line example's --input-shape=-1,13,64,64 is where probing starts: the Item says what inspect says.
    inspect = [
        sys.executable, "-m", "mlm_export", "inspect", "published/ResNet.safetensors", "--model-class",
        "torchgeo.models:resnet18", "--model-kwargs", '{"in_chans": 13, "num_classes": 10}', "--json",
    ]  # fmt: skip
    done = subprocess.run(inspect, cwd=work, env=env, capture_output=True, text=True, check=True)
    inspected = json.loads(done.stdout)
    written = json.loads((work / "published" / "cli.json").read_text())["properties"]["mlm:input"][0]["input"]
    assert written["shape"] == inspected["inputs"][0]["shape"] == [-1, 13, -1, -1]
    assert (work / "landcover.tif").is_file() and (work / "landcover.json").is_file()
