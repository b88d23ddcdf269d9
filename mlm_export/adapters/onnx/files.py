"""Write ONNX files: a staging directory inside the artifact directory, committed by rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import onnx

from mlm_export.adapters import ExportOptions
from mlm_export.description import (
    ModelDescription,
    slugify,
)
from mlm_export.errors import (
    OutputError,
    OutputExistsError,
)

#: In-memory models larger than this are saved with their tensors in ``<name>.onnx.data`` (protobuf's 2 GiB limit).
INLINE_LIMIT = 1_800_000_000


def _slug(name: str) -> str:
    return slugify(name).lower()


def _artifact_dir(options: ExportOptions) -> Path:
    directory = Path(options.artifact_dir) if options.artifact_dir is not None else Path.cwd() / "artifacts"
    return Path(os.path.abspath(directory))


def _copy_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def _save_proto(proto: onnx.ModelProto, path: Path, *, data_location: str | None = None) -> None:
    """Save ``proto`` to ``path``; above :data:`INLINE_LIMIT` its tensors go to ``data_location`` (mutates proto)."""
    try:
        if data_location is not None and proto.ByteSize() > INLINE_LIMIT:
            onnx.save_model(proto, str(path), save_as_external_data=True, location=data_location, size_threshold=1024)
        else:
            onnx.save_model(proto, str(path))
    except OSError as exc:
        message = f"Cannot write '{path}': {exc.strerror or exc}."
        raise OutputError(message, hint="Check the artifact directory.") from exc


def _copy(source: Path, destination: Path) -> None:
    """Copy an external-data file (not a hard link: the ONNX checker refuses files with several links)."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    except OSError as exc:
        raise OutputError(f"Cannot copy '{source}' to '{destination}': {exc.strerror or exc}.") from exc


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A hidden directory inside ``target``; removed with everything in it when the block ends."""
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".mlm-export-", dir=target))
    except OSError as exc:
        raise OutputError(
            f"Cannot write into artifact directory '{target}': {exc.strerror or exc}.",
            hint="Pass a writable artifact_dir.",
        ) from exc
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, target: Path, *, overwrite: bool = False) -> dict[str, str]:
    """Move every staged file to ``target`` (side files first, ``.onnx`` last); return old -> new paths.

    Raises:
        OutputExistsError: a file of that name is already there and ``overwrite`` is False.
    """
    files = sorted((p for p in stage.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".onnx", str(p)))
    taken = [target / f.relative_to(stage) for f in files if (target / f.relative_to(stage)).exists()]
    if taken and not overwrite:
        raise OutputExistsError(
            f"Artifact '{taken[0]}' already exists; an earlier item may point to it.",
            hint="Pass overwrite=True to replace it, or another artifact_dir.",
        )
    moved: dict[str, str] = {}
    try:
        for staged in files:
            final = target / staged.relative_to(stage)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            moved[str(staged)] = str(final)
    except OSError as exc:
        for final in moved.values():
            with contextlib.suppress(OSError):
                os.remove(final)
        raise OutputError(f"Cannot move the exported files into '{target}': {exc.strerror or exc}.") from exc
    return moved


def _relocate(described: ModelDescription, moved: Mapping[str, str]) -> ModelDescription:
    artifacts = tuple(
        replace(a, path=moved.get(a.path, a.path)) if a.path is not None else a for a in described.artifacts
    )
    return described.replace(artifacts=artifacts)
