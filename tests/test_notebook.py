"""The quickstart notebook runs top to bottom (no downloads) in a fresh kernel, and leaves no files behind."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _workdirs(directory: Path) -> set[Path]:
    return set(directory.glob("mlm-quickstart-*"))


@pytest.mark.enable_socket  # the kernel talks to pytest over local ZeroMQ sockets
def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_tmp = Path(tempfile.gettempdir())
    before = _workdirs(system_tmp)
    kernel_tmp = tmp_path / "tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))  # the kernel's tempfile.mkdtemp lands here, not in /tmp
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        assert len(_workdirs(kernel_tmp)) == 1  # the notebook's working directory (the model, the Item)
    finally:
        for workdir in _workdirs(kernel_tmp):
            shutil.rmtree(workdir)  # tens of MB per run: never left for pytest's kept tmp_path copies
    assert _workdirs(system_tmp) == before  # nothing new in the system's temporary directory
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "item.json valid" in outputs
    assert "check_item ok" in outputs
    assert "mlm:source_code timm.models.resnet:ResNet https://" in outputs
    assert "batch size " in outputs and "samples/s on cpu" in outputs
