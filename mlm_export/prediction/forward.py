"""One forward of a loaded model (a torch module or an onnxruntime session) on a numpy batch -> numpy outputs.

The batch is laid out in the Item's ``dim_order`` before the forward. PyTorch runs under ``torch.inference_mode``
in eval mode on the requested device; ONNX feeds the session's first input. Only the first output is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlm_export.errors import ProbeError


def is_onnx(model: Any) -> bool:
    """Whether ``model`` is an onnxruntime session."""
    return hasattr(model, "get_inputs") and hasattr(model, "run")


def prepare(model: Any, device: str) -> Any:
    """The model ready to run: a torch module in eval mode on ``device``; a session as it is."""
    if is_onnx(model):
        return model
    import torch

    if isinstance(model, torch.nn.Module):
        model = model.to(device)
        try:
            model.eval()
        except NotImplementedError:  # a torch.export (.pt2) module: its train/eval mode was fixed at export
            pass
    return model


def run(model: Any, batch: np.ndarray, device: str) -> np.ndarray:
    """The model's first output on ``batch`` (already in the declared dim_order and data_type).

    Raises:
        ProbeError: the forward fails, naming the batch's shape.
    """
    if is_onnx(model):
        name = model.get_inputs()[0].name
        try:
            outputs = model.run(None, {name: np.ascontiguousarray(batch)})
        except Exception as exc:
            raise ProbeError(f"onnxruntime failed on a batch of shape {list(batch.shape)}: {exc}") from exc
        return np.asarray(outputs[0])
    import torch

    with torch.inference_mode():
        try:
            result = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ProbeError(f"The model failed on a batch of shape {list(batch.shape)}: {exc}") from exc
    return _first_tensor(result).detach().to("cpu").numpy()


def _first_tensor(result: Any) -> Any:
    if isinstance(result, dict):
        result = next(iter(result.values()))
    if isinstance(result, (list, tuple)):
        result = result[0]
    return result
