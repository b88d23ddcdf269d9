"""Error translation for the PyTorch adapter: known torch/safetensors errors become typed mlm-export errors.

Each library call that reads a file is wrapped in :func:`_loading` with the exception types *that call* is known
to raise for a corrupt, truncated or mismatching file (found by experiment: the corrupt-file corpus of
``tests/adapters/torch/test_torch_boundary.py``). Only the library call sits inside the ``with`` block, so a broad
type such as ``RuntimeError`` can only come from the library; an exception from our own code is never translated
and surfaces as an internal error (CLI exit 3).
"""

from __future__ import annotations

import contextlib
import pickle
import struct
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

#: ``safe_open`` / ``load_file``: a header that lies (length past EOF, bad JSON, unknown dtype, offsets out of
#: range), a truncated or empty file, random bytes: all ``SafetensorError``; an unreadable file: ``OSError``.
SAFETENSORS_ERRORS: tuple[type[BaseException], ...] = (SafetensorError, OSError)

#: ``torch.load(weights_only=True)`` on a corrupt torch.save file. Zip problems (a truncated archive, a missing
#: ``data.pkl`` or ``data/N`` record) are ``RuntimeError``s of torch's stream reader, and the restricted unpickler
#: reports most bad pickles as ``UnpicklingError``/``EOFError``. But it indexes its stack and memo without checks,
#: so a corrupt pickle also raises ``KeyError`` (memo lookup), ``IndexError`` (empty stack; a truncated legacy
#: file), ``TypeError``/``AttributeError`` (an opcode applied to the wrong object), ``AssertionError``,
#: ``struct.error`` and ``UnicodeDecodeError`` (a ``ValueError``): all seen by mutating real checkpoints.
TORCH_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error,
    KeyError, IndexError, TypeError, AttributeError, AssertionError,
)  # fmt: skip

#: ``torch.load(weights_only=False)`` (``trust_pickle``): the same, plus a pickled class that no longer exists
#: (``AttributeError: Can't get attribute ...``, already listed) or whose module is not installed (``ImportError``).
TRUSTED_LOAD_ERRORS: tuple[type[BaseException], ...] = (*TORCH_LOAD_ERRORS, ImportError)

#: ``torch.jit.load``: torch's C++ reader raises ``RuntimeError`` (a missing ``code/``, ``constants.pkl`` or
#: ``data.pkl`` entry, a corrupt record); a damaged ``.debug_pkl``/code entry gives ``UnicodeDecodeError``
#: (a ``ValueError``) or ``IndexError``.
TORCHSCRIPT_LOAD_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, OSError, ValueError, IndexError)

#: ``torch.export.load``: the archive's ``models/*.json`` is deserialised in Python without validation, so a
#: corrupt or missing entry raises ``TypeError``, ``KeyError``, ``IndexError``, ``AttributeError`` or
#: ``AssertionError`` (a missing ``model_weights_config.json``) besides ``RuntimeError``/``ValueError``; a
#: truncated archive is ``zipfile.BadZipFile``.
EXPORT_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError, TypeError, AttributeError,
    AssertionError,
)  # fmt: skip

#: ``torch.serialization.get_unsafe_globals_in_checkpoint`` on a corrupt ``data.pkl``: its opcode scanner raises
#: ``UnpicklingError``, ``EOFError``, ``struct.error``, ``IndexError`` (a short read) or ``UnicodeDecodeError``; a
#: broken zip is a ``RuntimeError`` of torch's stream reader.
UNSAFE_GLOBALS_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error, IndexError,
)  # fmt: skip

#: ``nn.Module.load_state_dict(strict=False)``: tensors that cannot be copied into the module (``RuntimeError``).
LOAD_STATE_DICT_ERRORS: tuple[type[BaseException], ...] = (RuntimeError,)

#: What reading a checkpoint shard raises: ``load_file``/``safe_open`` or ``torch.load(weights_only=True)``.
SHARD_ERRORS: tuple[type[BaseException], ...] = (*SAFETENSORS_ERRORS, *TORCH_LOAD_ERRORS)


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
def _loading(path: Path, what: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Translate ``errors`` raised while reading ``path`` into :class:`ArtifactLoadError` naming the file.

    Args:
        path: the file being read (named in the message).
        what: what it is read as ("a safetensors file", "a TorchScript archive"...).
        errors: what the one library call inside the block raises for a corrupt file (the ``*_ERRORS`` tuples
            above); anything else propagates unchanged.
    """
    try:
        with _quiet_torch():
            yield
    except MLMExportError:
        raise
    except errors as exc:
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
