"""Error translation for the PyTorch adapter: known torch/safetensors errors become typed mlm-export errors."""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

from mlm_export.errors import (
    ArtifactLoadError,
    MLMExportError,
    ProbeError,
)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:limit]}"


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Silence torch's own deprecation chatter (torch.jit is deprecated in favour of torch.export)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        yield


@contextlib.contextmanager
def _loading(path: Path, what: str) -> Iterator[None]:
    """Translate errors of reading ``path`` into :class:`ArtifactLoadError` naming the file."""
    try:
        with _quiet_torch():
            yield
    except MLMExportError:
        raise
    except (RuntimeError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, IndexError,
            pickle.UnpicklingError, zipfile.BadZipFile, SafetensorError) as exc:  # fmt: skip
        raise ArtifactLoadError(
            f"Cannot read '{path}' as {what}: {_first_line(exc)}",
            hint="The file may be truncated or corrupt; save it again, or check that it is the file you meant.",
        ) from exc


@contextlib.contextmanager
def _compiling(what: str) -> Iterator[None]:
    """Translate errors of scripting/tracing/exporting into :class:`ProbeError`."""
    try:
        with _quiet_torch():
            yield
    except MLMExportError:
        raise
    except (RuntimeError, TypeError, ValueError, AssertionError, AttributeError, NotImplementedError) as exc:
        raise ProbeError(
            f"{what} failed: {_first_line(exc)}",
            hint="Choose another artifact_format (e.g. 'safetensors'), or fix the model so that it compiles.",
        ) from exc
