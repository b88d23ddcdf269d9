"""What an adapter's ``measure`` returns, and how ``export_item`` stages and publishes the artifacts it describes.

Measuring is apart from writing: an adapter's ``measure(source, options)`` returns a :class:`Measured` — the
:class:`~mlm_export.description.ModelDescription`, whose written artifacts already carry their final paths, plus
an :class:`ArtifactWriter` that writes those files into a staging directory. ``export_item`` owns the one
:class:`~mlm_export.files.Staging` of a run: write -> hash -> build -> validate -> publish (by hard link, never
replacing). ``inspect_model`` calls ``measure`` and never the writer, so it writes nothing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from mlm_export.description import ModelDescription
from mlm_export.errors import OutputError, OutputExistsError
from mlm_export.files import Staging, default_artifact_dir, exists_error, file_mode, resolve_output

#: Tries to find a free name when a concurrent export takes the natural one between check and publication.
_PUBLISH_TRIES = 3


@dataclass(frozen=True)
class ArtifactWriter:
    """The files a description's artifacts will be, and how to write them.

    Attributes:
        directory: where the files are published (resolved, absolute).
        names: file names in publication order (side files first, the model file last).
        write: writes every file of ``names`` into the staging directory it is given.
        renamable: whether the (single, self-contained) file may take another name when its name is taken.
    """

    directory: Path
    names: tuple[str, ...]
    write: Callable[[Path], None]
    renamable: bool = True


@dataclass(frozen=True)
class Measured:
    """An adapter's result: the measured description and the writer of its artifacts (None: nothing to write)."""

    description: ModelDescription
    writer: ArtifactWriter | None = None


def artifact_directory(artifact_dir: str | os.PathLike[str] | None) -> Path:
    """The resolved directory an in-memory model's artifacts go to (``./artifacts`` by default)."""
    return resolve_output(artifact_dir if artifact_dir is not None else default_artifact_dir())


def refuse_taken(measured: Measured, *, overwrite: bool) -> None:
    """Refuse, before writing, to publish over files that exist (an earlier Item may point to them).

    Raises:
        OutputExistsError: a file of that name exists and ``overwrite`` is False.
    """
    writer = measured.writer
    if writer is None or overwrite:
        return
    for name in writer.names:
        if os.path.lexists(writer.directory / name):
            raise exists_error(writer.directory / name)


def write_staged(measured: Measured, staging: Staging) -> dict[str, Path]:
    """Write the artifacts into ``staging``; return the final path of each written file -> its staged path.

    Raises:
        OutputError: the writer failed or did not write a file it announced.
    """
    writer = measured.writer
    if writer is None:
        return {}
    writer.write(staging.path)
    staged = {}
    for name in writer.names:
        path = staging.path / name
        if not path.is_file():
            raise OutputError(f"The artifact '{writer.directory / name}' was not written.", hint="Please report a bug.")
        # Some writers (safetensors) create 0600 files: published files get the mode the umask gives.
        os.chmod(path, file_mode())
        staged[str(writer.directory / name)] = path
    return staged


def free_name(measured: Measured, staging: Staging, *, overwrite: bool) -> tuple[Measured, str | None]:
    """Rename the staged model file when its natural name was taken meanwhile; the note says so.

    Returns:
        The description pointing at the name it will be published under, and a note when that name changed.

    Raises:
        OutputExistsError: the name is taken and the files cannot be renamed (several files refer to each other).
    """
    writer = measured.writer
    if writer is None or overwrite or len(writer.names) != 1:
        if writer is not None and not overwrite:
            for name in writer.names:
                staging.final_name(name, overwrite=False, renamable=False)
        return measured, None
    name = writer.names[0]
    final = staging.final_name(name, overwrite=False, renamable=writer.renamable)
    if final == name:
        return measured, None
    os.rename(staging.path / name, staging.path / final)
    old, new = str(writer.directory / name), str(writer.directory / final)
    artifacts = tuple(replace(a, path=new, href=None) if a.path == old else a for a in measured.description.artifacts)
    note = f"The artifact was published as '{final}' because '{name}' already existed in '{writer.directory}'."
    description = measured.description.replace(artifacts=artifacts, notes=(*measured.description.notes, note))
    return Measured(description, replace(writer, names=(final,))), note


def publish(measured: Measured, staging: Staging, *, overwrite: bool) -> None:
    """Publish the staged files under their final names (never replacing one unless ``overwrite``).

    Raises:
        OutputExistsError: a name was taken and ``overwrite`` is False.
        OutputError: the file system refused.
    """
    if measured.writer is not None:
        staging.publish(measured.writer.names, overwrite=overwrite)


def publish_with_retry(
    measured: Measured,
    staging: Staging,
    *,
    overwrite: bool,
    rebuild: Callable[[Measured], object],
) -> tuple[Measured, object | None]:
    """:func:`free_name` then :func:`publish`; ``rebuild`` remakes the Item when the name changed.

    Returns:
        The measured description as published and the rebuilt object (None when nothing changed).
    """
    rebuilt: object | None = None
    for attempt in range(_PUBLISH_TRIES):
        renamed, note = free_name(measured, staging, overwrite=overwrite)
        if note is not None:
            warnings.warn(note, RuntimeWarning, stacklevel=3)
            rebuilt = rebuild(renamed)
        try:
            publish(renamed, staging, overwrite=overwrite)
        except OutputExistsError:
            if attempt + 1 == _PUBLISH_TRIES or renamed.writer is None or len(renamed.writer.names) != 1:
                raise
            measured = renamed
            continue
        return renamed, rebuilt
    raise AssertionError("unreachable")  # pragma: no cover


def staged_digests(staged: Mapping[str, Path], hasher: Callable[[Path], object]) -> dict[str, object]:
    """Digests of the staged files keyed by their final path (the Item names the final path)."""
    return {final: hasher(path) for final, path in staged.items()}


def publish_now(measure: Callable[[Staging], Measured], directory: Path, *, overwrite: bool) -> ModelDescription:
    """Measure with a staging directory at hand, then write and publish at once (an adapter's ``describe``).

    ``export_item`` does not use this: it builds and validates the Item between writing and publishing.
    """
    with Staging(directory) as staging:
        measured = measure(staging)
        refuse_taken(measured, overwrite=overwrite)
        write_staged(measured, staging)
        measured, _ = publish_with_retry(measured, staging, overwrite=overwrite, rebuild=lambda _m: None)
        return measured.description
