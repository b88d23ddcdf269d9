"""Policies both framework adapters apply the same way (a third adapter must follow them too).

* **A requested device that is not there** is a :class:`~mlm_export.errors.ConfigurationError` raised before any
  work (:func:`missing_device`): the Item records the accelerator the dry-run ran on, so silently running on the
  CPU would publish a measurement the caller did not ask for.
* **A failing forward** is a :class:`~mlm_export.errors.ProbeError` naming the input shapes, unless the source
  itself declares its shapes (an ONNX graph): then the dry-run's failure is a warning plus a note in the Item's
  description, and the declared shapes are published. Only the errors in :data:`FORWARD_ERRORS` (what a model's
  forward raises on wrong inputs) are translated; anything else is a bug and propagates.
* **Running out of memory** in a dry-run is reported as such, never taken as "this shape is not accepted": a
  predicted peak over the budget, or a run that fails to allocate (``torch.OutOfMemoryError``, ``MemoryError``,
  onnxruntime's allocation failure; :func:`out_of_memory` tells them apart) is a
  :class:`~mlm_export.errors.DryRunMemoryError` naming the input shapes (:func:`memory_error`), in probing and in
  ``check_item``'s rerun alike.
"""

from __future__ import annotations

from typing import Any

from mlm_export.errors import ConfigurationError, DryRunMemoryError, first_line

#: What a model's forward raises when it does not accept its inputs (shape, dtype or structure mismatch).
FORWARD_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    ValueError,
    TypeError,
    AssertionError,
    IndexError,
    KeyError,
)


def missing_device(device: Any, detail: str, *, choices: str = "'cpu', 'cuda', 'cuda:N'") -> ConfigurationError:
    """The error for ``device=`` naming a device this machine or runtime does not have."""
    return ConfigurationError(
        f"device={device!r} was asked for, but {detail}.",
        hint=f"Pass device='cpu', or run where that device is available (device= accepts {choices}).",
    )


#: What the text of an allocation failure says when its type does not (onnxruntime raises ``Fail``/
#: ``RuntimeException`` with the allocator's message, ``std::bad_alloc`` without its arena; torch's CPU allocator a
#: RuntimeError on older versions).
_OUT_OF_MEMORY_TEXT = ("Failed to allocate memory", "bad allocation", "bad_alloc", "out of memory",
                       "can't allocate memory")  # fmt: skip


def out_of_memory(exc: BaseException) -> bool:
    """Whether a run failed for lack of memory rather than because the model refused its inputs."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return any(text in str(exc) for text in _OUT_OF_MEMORY_TEXT)


def memory_error(exc: BaseException, inputs: str, *, hint: str) -> DryRunMemoryError:
    """The error for a run on ``inputs`` (their names and shapes, as text) that failed for lack of memory."""
    return DryRunMemoryError(f"The model ran out of memory on inputs {inputs}: {first_line(exc)}", hint=hint)
