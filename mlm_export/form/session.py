"""One form session: its secret token, its temporary directory, the model chosen, and the library calls on it.

Everything the form does to a model goes through :func:`mlm_export.inspect_model` and :func:`mlm_export.export_item`
with the arguments of :mod:`mlm_export.form.fields`. The session keeps the uploaded file and what was exported in
one temporary directory, removed by :meth:`FormSession.close` (the server calls it when it stops, Ctrl-C included).
Calls on the model run one at a time (a lock): the warnings and notes each call gives are collected for it alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlm_export.errors import ConfigurationError, UploadTooLargeError

#: Default cap on an uploaded model file (bytes): 4 GiB.
DEFAULT_MAX_UPLOAD = 4 * 1024**3
#: Model file suffixes the form accepts (those the adapters read).
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pt2", ".onnx", ".torchscript", ".jit")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Said:
    """The warnings and notes the library gave during one call."""

    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Collector(logging.Handler):
    def __init__(self, said: Said) -> None:
        super().__init__(logging.INFO)
        self.said = said

    def emit(self, record: logging.LogRecord) -> None:
        target = self.said.notes if getattr(record, "mlm_note", False) else self.said.warnings
        target.append(record.getMessage())


def upload_name(name: str | None) -> str:
    """A safe file name for an uploaded model (its suffix kept, anything else reduced to ``[A-Za-z0-9._-]``).

    Raises:
        ConfigurationError: the name has no model suffix the form accepts.
    """
    base = Path(str(name or "")).name
    safe = _SAFE_NAME.sub("_", base).lstrip(".") or "model"
    if not safe.lower().endswith(MODEL_SUFFIXES):
        raise ConfigurationError(
            f"Uploaded file '{base}' is not a model file the form reads.",
            hint=f"Choose a file ending in one of {', '.join(MODEL_SUFFIXES)}.",
        )
    return safe


class FormSession:
    """A token, a temporary directory and the model file of one ``mlm-export form`` run."""

    def __init__(self, *, max_upload: int = DEFAULT_MAX_UPLOAD, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self.max_upload = max_upload
        self.directory = Path(tempfile.mkdtemp(prefix="mlm-export-form-"))
        self.model_path: Path | None = None
        self.exported: Path | None = None  # the Item JSON of the last export
        self._lock = threading.Lock()
        self._ticket_lock = threading.Lock()
        self._exports = 0
        self._checks = 0  # the newest live check's number: an older one still waiting for the lock is skipped

    # --- the model file -----------------------------------------------------------------------------------------

    async def receive_upload(self, name: str | None, chunks: AsyncIterator[bytes], declared: int | None) -> Path:
        """Write an upload to the session directory as it streams in, refusing it once it passes the cap.

        Raises:
            UploadTooLargeError: the declared or the streamed size is over ``max_upload`` (nothing is kept).
            ConfigurationError: the file name has no model suffix.
        """
        safe = upload_name(name)
        if declared is not None and declared > self.max_upload:
            raise self._too_large(declared)
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.directory))
        target, size = folder / safe, 0
        try:
            with open(target, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_upload:
                        raise self._too_large(size)
                    out.write(chunk)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        previous, self.model_path = self.model_path, target
        if previous is not None and previous.parent.parent == self.directory:  # an earlier upload: not needed again
            shutil.rmtree(previous.parent, ignore_errors=True)
        return target

    def _too_large(self, size: int) -> UploadTooLargeError:
        return UploadTooLargeError(
            f"The uploaded file is larger than the form's cap ({size} > {self.max_upload} bytes); nothing was kept.",
            hint="Give its path on this machine instead, or start the form with a larger --max-upload.",
        )

    def choose_path(self, path: str) -> Path:
        """Use a model file on this machine (read where it is; never copied, never changed).

        Raises:
            ConfigurationError: it is not an existing file.
        """
        chosen = Path(path).expanduser()
        if not chosen.is_file():
            raise ConfigurationError(f"Model path '{path}' is not a file.", hint="Give the path of a model file.")
        self.model_path = chosen.resolve()
        return self.model_path

    def model(self) -> Path:
        """The chosen model file.

        Raises:
            ConfigurationError: none was chosen yet.
        """
        if self.model_path is None:
            raise ConfigurationError("No model file was chosen.", hint="Upload a model file or give its path first.")
        return self.model_path

    # --- library calls --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def calling(self) -> Iterator[Said]:
        """One library call at a time, with the warnings and notes it gives collected."""
        said = Said()
        handler = _Collector(said)
        logger = logging.getLogger("mlm_export")
        with self._lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logger.addHandler(handler)
            try:
                yield said
            finally:
                logger.removeHandler(handler)
                said.warnings.extend(str(w.message) for w in caught)

    def inspect(self, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], Said]:
        """``inspect_model`` on the chosen file: the measured facts (JSON-safe) and what the library said."""
        from mlm_export.api import inspect_model
        from mlm_export.hashing import hash_file

        model = self.model()
        with self.calling() as said:
            described = inspect_model(model, **arguments)
            digest = hash_file(model, progress=False)
        facts = described.to_dict()
        facts["file"] = {"name": model.name, "size": digest.size, "checksum": digest.checksum}
        said.notes[:0] = list(described.notes)
        return facts, said

    def build(self, arguments: Mapping[str, Any]) -> tuple[Any, Said] | None:
        """``export_item(model, **arguments)`` with anything it writes in a scratch directory removed afterwards.

        Returns:
            The Item (as a dict) and what the library said; None when a newer check came in while this one waited
            (a person typing faster than a model exports: only the newest values are checked).
        """
        from mlm_export.api import export_item

        model = self.model()
        with self._ticket_lock:
            self._checks += 1
            ticket = self._checks
        scratch = Path(tempfile.mkdtemp(prefix="check-", dir=self.directory))
        try:
            with self.calling() as said:
                if ticket != self._checks:
                    return None
                item = export_item(model, **{**arguments, "artifact_dir": scratch / "artifacts"})
            return item.to_dict(), said
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def export(self, arguments: Mapping[str, Any]) -> tuple[Path, Said]:
        """``export_item`` for keeps: the model copied into a fresh folder, the Item saved beside it.

        The folder holds ``<item id>.json``, the model file and whatever ``export_item`` wrote (a converted
        artifact); hrefs are relative, so the folder is the download.
        """
        from mlm_export.api import export_item
        from mlm_export.stac.writer import save_item

        model = self.model()
        self._exports += 1
        folder = self.directory / f"export-{self._exports}"
        folder.mkdir()
        copy = folder / model.name
        try:
            os.link(model, copy)  # an upload: same file system, no second copy of a large model
        except OSError:
            shutil.copyfile(model, copy)
        with self.calling() as said:
            item = export_item(copy, **{**arguments, "artifact_dir": folder})
            path = save_item(item, folder / f"{item.id}.json")
        self.exported = path
        return path, said

    def last_export(self) -> Path:
        """The Item JSON of the last export.

        Raises:
            ConfigurationError: nothing was exported yet.
        """
        if self.exported is None:
            raise ConfigurationError("Nothing was exported yet.", hint="Press 'Make the Item' first.")
        return self.exported

    def close(self) -> None:
        """Remove the session's temporary directory (uploads, exports, scratch)."""
        shutil.rmtree(self.directory, ignore_errors=True)
