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
)
from mlm_export.errors import (
    OutputError,
)
from mlm_export.files import TEMP_MARK, artifact_name, write_error
from mlm_export.publishing import ArtifactWriter, Measured, artifact_directory

#: In-memory models larger than this are saved with their tensors in ``<name>.onnx.data`` (protobuf's 2 GiB limit).
INLINE_LIMIT = 1_800_000_000


def _slug(name: str) -> str:
    return artifact_name(name, "")


def _artifact_dir(options: ExportOptions) -> Path:
    return artifact_directory(options.artifact.artifact_dir)


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
def scratch_directory(options: ExportOptions) -> Iterator[Path]:
    """An empty directory for the files the adapter must write to measure them (an export, an embedded copy).

    Inside the run's staging directory when ``export_item`` provides one (the files are then published from
    there), else a temporary directory removed afterwards (``inspect_model``: nothing is written).
    """
    if options.scratch is not None:
        yield Path(tempfile.mkdtemp(prefix="onnx-", dir=options.scratch()))
        return
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_MARK}onnx-") as temporary:
        yield Path(temporary)


def measured_from_scratch(described: ModelDescription, scratch: Path, options: ExportOptions) -> Measured:
    """The description with the scratch files at their final paths, and the writer that stages them."""
    directory = _artifact_dir(options)
    names: list[str] = []
    artifacts = []
    for artifact in described.artifacts:
        if artifact.path is not None and Path(artifact.path).parent == scratch:
            name = Path(artifact.path).name
            names.append(name)
            artifact = replace(artifact, path=str(directory / name))
        artifacts.append(artifact)
    names.sort(key=lambda n: (n.endswith(".onnx"), n))  # side files first, the model last

    def move_into(stage: Path) -> None:
        for name in names:
            try:
                os.replace(scratch / name, stage / name)
            except OSError as exc:
                raise write_error(stage / name, exc) from exc

    writer = ArtifactWriter(directory, tuple(names), move_into, renamable=len(names) == 1) if names else None
    return Measured(described.replace(artifacts=tuple(artifacts)), writer)


def _relocate(described: ModelDescription, moved: Mapping[str, str]) -> ModelDescription:
    artifacts = tuple(
        replace(a, path=moved.get(a.path, a.path)) if a.path is not None else a for a in described.artifacts
    )
    return described.replace(artifacts=artifacts)
