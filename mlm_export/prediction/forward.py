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


def run(model: Any, batch: np.ndarray | list[np.ndarray], device: str) -> np.ndarray:
    """The model's first output on ``batch`` (already in the declared dim_order and data_type).

    A list holds one batch per input, in the Item's ``mlm:input`` order: positional arguments of a torch model,
    the session's inputs in their order for ONNX.

    Raises:
        ProbeError: the forward fails, naming the batch's shape.
    """
    batches = batch if isinstance(batch, list) else [batch]
    shapes = " + ".join(str(list(b.shape)) for b in batches)
    if is_onnx(model):
        names = [i.name for i in model.get_inputs()]
        try:
            outputs = model.run(None, {n: np.ascontiguousarray(b) for n, b in zip(names, batches, strict=True)})
        except Exception as exc:
            raise ProbeError(f"onnxruntime failed on a batch of shape {shapes}: {exc}") from exc
        return np.asarray(outputs[0])
    import torch

    with torch.inference_mode():
        try:
            result = model(*(torch.from_numpy(np.ascontiguousarray(b)).to(device) for b in batches))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ProbeError(f"The model failed on a batch of shape {shapes}: {exc}") from exc
    return _first_tensor(result).detach().to("cpu").numpy()


def _first_tensor(result: Any) -> Any:
    if isinstance(result, dict):
        result = next(iter(result.values()))
    if isinstance(result, (list, tuple)):
        result = result[0]
    return result
