"""The quickstart notebook runs top to bottom (no downloads) in a fresh kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.enable_socket  # the kernel talks to pytest over local ZeroMQ sockets
def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "item.json valid" in outputs
    assert "check_item ok" in outputs
    assert "mlm:source_code timm.models.resnet:ResNet https://" in outputs
    assert "batch size " in outputs and "samples/s on cpu" in outputs
