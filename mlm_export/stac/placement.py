"""Artifacts of a catalog's Items placed inside the catalog, next to their Item, so that the catalog is self-contained.

:func:`~mlm_export.stac.collection.build_catalog` gives every local asset of an Item a place under
``DIR/<item id>/``: the files keep their names and their layout relative to one another (the common parent of the
Item's local artifacts is the Item's directory), so an ONNX model and its external-data file stay side by side.
When a file of that name is already there with other bytes (an earlier Item may point to it), the Item's whole set
goes into ``DIR/<item id>/<12 hex>/`` instead, named by a digest of the set: an existing different file is never
replaced or deleted.

Each file is staged in a temporary directory of the catalog, as a hard link of its source when both lie on one
filesystem and as a copy otherwise, and verified against the asset's ``file:size`` and ``file:checksum`` before
anything is published. Publishing links the staged file to its final name, which never replaces a file
(:func:`os.link` fails on an existing name); on a failure every file this process created is removed again.
Hard links share the source's bytes: mlm-export's writers replace files by rename, never in place, so a later
export does not change a catalog artifact; a tool that rewrites the source in place changes it, and the checksum
says so (``mlm-export validate``).
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlm_export.errors import ConfigurationError, ItemValidationError, OutputError, OutputExistsError
from mlm_export.provenance.container import is_registry_reference
from mlm_export.stac.io import decode_href, encode_href, resolve_asset_href

#: errno values of os.link that mean "no hard link here, copy instead".
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


@dataclass(frozen=True)
class Artifact:
    """One local file of an Item: where it is read from and where it goes inside the Item's catalog directory."""

    keys: tuple[str, ...]
    source: Path  # symlinks resolved: the bytes that are placed
    relative: PurePosixPath  # under the Item's directory (or its versioned subdirectory)
    size: int | None
    checksum: str | None


@dataclass
class ItemArtifacts:
    """The local artifacts of one Item and the subdirectory (``""`` or a digest) they are placed in."""

    item_id: str
    artifacts: list[Artifact] = field(default_factory=list)
    version: str = ""

    def relative(self, artifact: Artifact) -> PurePosixPath:
        """The artifact's path relative to the Item's directory."""
        return PurePosixPath(self.version, artifact.relative) if self.version else artifact.relative

    def href(self, artifact: Artifact) -> str:
        """The artifact's href in the catalog Item (relative, percent-encoded)."""
        return encode_href(f"./{self.relative(artifact).as_posix()}")


def _local_file(href: str, base: Path | None, confined: bool, allow_outside: Sequence[Any], where: str) -> Path | None:
    """The file a local ``href`` names (lexical path; ``None`` for URLs), refused when outside its place."""
    resolved = resolve_asset_href(
        href, base, where=where, allow_outside=allow_outside, confine=confined,
        outside_hint="Nothing was written. Keep artifacts next to their Item, or pass allow_outside=[DIR] "
        "(--allow-outside DIR).",
    )  # fmt: skip
    if resolved.kind in ("remote", "registry"):
        return None
    assert resolved.path is not None
    if not resolved.path.is_file():
        state = "does not exist" if not resolved.path.exists() else "is not a regular file"
        raise ItemValidationError(
            f"{where}: local file {href!r} {state} (resolved to {resolved.path}); it cannot be placed in the catalog.",
            hint="Point the asset at the model file, or publish the file and use its URL.",
        )
    raw = Path(decode_href(href))
    return Path(os.path.normpath(raw if raw.is_absolute() or base is None else base / raw))


def collect_artifacts(
    item_id: str,
    assets: Mapping[str, Any],
    base: Path | None,
    confined: bool,
    allow_outside: Sequence[Any],
    where: str,
) -> ItemArtifacts:
    """The local artifacts of an Item's ``assets`` (URLs are left out), named relative to their common parent.

    Raises:
        ConfigurationError: a relative href and no location to resolve it against.
        ItemValidationError: an href outside the Item's directory and ``allow_outside``, or not a regular file.
    """
    found: dict[Path, tuple[Path, list[str], Mapping[str, Any]]] = {}
    for key, asset in assets.items():
        if isinstance(asset, Mapping) and is_registry_reference(asset):  # an image in a registry (mlm:container)
            continue
        href = asset.get("href") if isinstance(asset, Mapping) else None
        if not isinstance(href, str) or not href:
            raise ConfigurationError(f"{where} asset {key!r} has no href.", hint="Every asset needs an href.")
        lexical = _local_file(href, base, confined, allow_outside, f"{where} asset {key!r}")
        if lexical is not None:
            found.setdefault(lexical, (Path(os.path.realpath(lexical)), [], asset))[1].append(key)
    result = ItemArtifacts(item_id)
    if not found:
        return result
    parent = Path(os.path.commonpath([p.parent for p in found]))
    for lexical, (source, keys, asset) in found.items():
        size, checksum = asset.get("file:size"), asset.get("file:checksum")
        relative = PurePosixPath(lexical.relative_to(parent).as_posix())
        result.artifacts.append(Artifact(tuple(keys), source, relative, size, checksum))
    return result


def _digest_of(path: Path, checksum: str | None) -> str:
    from mlm_export.artifact_cache import multihash_of, new_hasher

    hasher = new_hasher(checksum) if checksum else hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            hashlib.file_digest(stream, lambda: hasher)
    except OSError as exc:
        raise OutputError(f"Cannot read '{path}' to verify it: {exc.strerror}.", hint="Check the permissions.") from exc
    return multihash_of(hasher, checksum or "1220")


def _holds(target: Path, artifact: Artifact) -> bool:
    """Whether the existing ``target`` holds the artifact's bytes (checked against ``file:checksum`` when given)."""
    if not target.is_file() or (isinstance(artifact.size, int) and target.stat().st_size != artifact.size):
        return False
    if artifact.checksum:
        return _digest_of(target, artifact.checksum) == artifact.checksum
    return os.path.samefile(target, artifact.source) or filecmp.cmp(target, artifact.source, shallow=False)


def _version(item: ItemArtifacts) -> str:
    """12 hex digits naming the Item's set of artifacts (relative names and contents)."""
    parts = sorted((a.relative.as_posix(), a.checksum or _digest_of(a.source, None)) for a in item.artifacts)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def choose_places(item: ItemArtifacts, directory: Path, reserved: Iterable[str]) -> list[Artifact]:
    """Set ``item.version`` so that no existing different file is in the way; return the artifacts still to place.

    Artifacts already in place (same bytes at the final name) are not returned.

    Raises:
        OutputExistsError: even the versioned names are taken by other bytes.
    """
    if not item.artifacts:
        return []
    taken, clash = set(reserved), None
    for version in ("", _version(item)):
        item.version = version
        pending, clash = [], None
        for artifact in item.artifacts:
            relative = item.relative(artifact)
            target = directory / relative
            if relative.as_posix() in taken or target.is_dir() or target.is_symlink():
                clash = target
            elif target.exists():
                if not _holds(target, artifact):
                    clash = target
            else:
                pending.append(artifact)
            if clash is not None:
                break
        if clash is None:
            return pending
    raise OutputExistsError(
        f"'{clash}' already exists with other bytes; an earlier Item may point to it, so it is not replaced.",
        hint="Choose another catalog directory, or move that file away if no Item uses it.",
    )


def _verify(staged: Path, artifact: Artifact, where: str) -> None:
    size = staged.stat().st_size
    if isinstance(artifact.size, int) and size != artifact.size:
        raise ItemValidationError(
            f"{where}: file:size is {artifact.size} but '{artifact.source}' has {size} bytes. Nothing was written.",
            hint="Re-export the Item, or fix file:size.",
        )
    if artifact.checksum and (actual := _digest_of(staged, artifact.checksum)) != artifact.checksum:
        raise ItemValidationError(
            f"{where}: file:checksum does not match '{artifact.source}' (its digest is {actual}). Nothing was written.",
            hint="The file changed after the Item was written: re-export the Item.",
        )


def stage(artifact: Artifact, staged: Path, where: str) -> None:
    """Hard-link (else copy) the artifact's source to ``staged`` and verify it against ``file:size``/``checksum``.

    Raises:
        ItemValidationError: the bytes do not match the Item.
        OutputError: the file cannot be read or written.
    """
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(artifact.source, staged)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise OutputError(f"Cannot link '{artifact.source}' into the catalog: {exc.strerror}.") from exc
        try:
            shutil.copyfile(artifact.source, staged)
        except OSError as copy_exc:
            raise OutputError(
                f"Cannot copy '{artifact.source}' into the catalog: {copy_exc.strerror or copy_exc}.",
                hint="Check free space and permissions.",
            ) from copy_exc
    _verify(staged, artifact, where)


@dataclass
class Publication:
    """Files and directories :func:`publish_file` created, so that a failure removes exactly those."""

    files: list[Path] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)

    def make_parents(self, target: Path, root: Path) -> None:
        """Create ``target``'s missing parent directories up to ``root``, remembering them."""
        missing = []
        parent = target.parent
        while parent != root and not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            directory.mkdir()
            self.directories.append(directory)

    def undo(self) -> None:
        """Remove the files and (empty) directories created, newest first."""
        for path in reversed(self.files):
            with contextlib.suppress(OSError):
                path.unlink()
        for directory in reversed(self.directories):
            with contextlib.suppress(OSError):
                directory.rmdir()


def publish_file(staged: Path, target: Path, artifact: Artifact, done: Publication) -> None:
    """Give the staged file its final name without replacing anything.

    Raises:
        OutputExistsError: another process put different bytes at ``target`` meanwhile.
    """
    try:
        os.link(staged, target)
    except FileExistsError:
        if not _holds(target, artifact):
            raise OutputExistsError(
                f"'{target}' appeared meanwhile with other bytes; it was not replaced.",
                hint="Another process writes into the catalog; build it again.",
            ) from None
        return
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        with open(staged, "rb") as source, open(target, "xb") as copy:  # O_EXCL: never replaces
            done.files.append(target)
            shutil.copyfileobj(source, copy, 1024 * 1024)
        return
    done.files.append(target)
