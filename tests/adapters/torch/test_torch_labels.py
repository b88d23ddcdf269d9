"""Asset titles and error messages say what the file really holds (issue 12, point 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_models as tm

from mlm_export import export_item
from mlm_export.errors import ConfigurationError

EXTENT = {"bbox": [0, 0, 1, 1], "datetime": "2024-01-01T00:00:00Z"}


def test_pickled_module_is_not_titled_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(tm.TinyMLP(), path)
    item = export_item(path, trust_pickle=True, **EXTENT)
    title = item.assets["model"].title
    assert "state_dict" not in title and "pickled TinyMLP module" in title
    weights = tmp_path / "weights.pt"
    torch.save(tm.TinyMLP().state_dict(), weights)
    assert "state_dict" in export_item(weights, model_class=tm.TinyMLP, **EXTENT).assets["model"].title


def test_lightning_checkpoint_error_does_not_call_it_a_bare_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "epoch=0.ckpt"
    checkpoint = {"pytorch-lightning_version": "2.4.0", "state_dict": tm.TinyMLP().state_dict(), "epoch": 0}
    torch.save(checkpoint, path)
    with pytest.raises(ConfigurationError, match="holds a Lightning checkpoint with a state_dict") as info:
        export_item(path, **EXTENT)
    assert "bare" not in info.value.message
    item = export_item(path, model_class=tm.TinyMLP, **EXTENT)
    assert item.assets["model"].title == "epoch=0.ckpt: Lightning checkpoint (torch.save)"
