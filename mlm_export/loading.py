"""Round trip: load the model an Item publishes (after verifying its file) and check it against the Item.

``load_model`` finds the ``mlm:model`` asset, checks ``file:size`` and ``file:checksum`` before anything is
deserialised, and loads by ``mlm:artifact_type`` through the adapter of that framework. ``check_item`` then builds
inputs from the declared ``mlm:input`` (dynamic dimensions at small sizes, declared dtypes), runs the model once and
compares every declared output's shape and dtype with what came out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlm_export.adapters import ExportOptions, LoadOptions, ProbeOptions
from mlm_export.download_limits import DownloadLimits
from mlm_export.errors import (
    ChecksumMismatchError,
    ConfigurationError,
    ItemValidationError,
    UnsupportedSourceError,
    UntrustedCodeError,
    UnverifiedArtifactError,
)
from mlm_export.hashing import hash_file
from mlm_export.probing import DEFAULT_SIZES, MeasuredTensor

if TYPE_CHECKING:
    import pystac

    from mlm_export.known_answer import KnownAnswerResult

#: ``mlm:artifact_type`` -> adapter module that loads and runs it.
LOADERS: dict[str, str] = {
    "safetensors.torch.save_file": "mlm_export.adapters.torch",
    "torch.save": "mlm_export.adapters.torch",
    "torch.jit.save": "mlm_export.adapters.torch",
    "torch.export.save": "mlm_export.adapters.torch",
    "onnx": "mlm_export.adapters.onnx",
}
#: Sizes used for dynamic dimensions when checking (batch 2 so that batch handling is exercised).
CHECK_SIZES = {**DEFAULT_SIZES, "batch": 2}


@dataclass(frozen=True)
class ModelArtifact:
    """The ``mlm:model`` asset of an Item, resolved to a local file."""

    key: str
    path: Path
    artifact_type: str
    size: int | None
    checksum: str | None
    #: The file is a verified download handed out by the artifact cache (hashed on that hand-out), so loading
    #: does not hash it a second time.
    fetched: bool = False


@dataclass(frozen=True)
class OutputCheck:
    """One declared output against what the model produced."""

    name: str
    declared_shape: tuple[int, ...]
    declared_type: str
    actual_shape: tuple[int, ...] | None
    actual_type: str | None
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class CheckReport:
    """Result of :func:`check_item`: ``ok`` when every declared output matched."""

    ok: bool
    artifact: Path
    artifact_type: str
    input_shapes: tuple[tuple[int, ...], ...]
    outputs: tuple[OutputCheck, ...]
    problems: tuple[str, ...] = ()
    #: The Item's asset that was loaded, and the file name its href gives (``artifact`` may be a cache entry).
    asset_key: str | None = None
    file_name: str | None = None
    #: The rerun of the published example (asset ``known-answer``) against its output; None when none is published.
    known_answer: KnownAnswerResult | None = None

    @property
    def max_difference(self) -> float | None:
        """The largest difference between the rerun and the published known answer (None: none published)."""
        return self.known_answer.max_difference if self.known_answer is not None else None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        name = self.file_name or self.artifact.name
        asset = f"asset {self.asset_key!r}, " if self.asset_key else ""
        lines = [f"check_item {'ok' if self.ok else 'FAILED'}: {name} ({asset}{self.artifact_type})"]
        lines.append(f"  inputs  {', '.join(str(list(s)) for s in self.input_shapes)}")
        for out in self.outputs:
            actual = f"{list(out.actual_shape)} {out.actual_type}" if out.actual_shape is not None else "missing"
            mark = "ok" if out.ok else f"MISMATCH: {out.reason}"
            lines.append(f"  output  {out.name}: declared {list(out.declared_shape)} {out.declared_type}, "
                         f"got {actual}  {mark}")  # fmt: skip
        lines += [f"  problem {p}" for p in self.problems]
        if self.known_answer is not None:
            lines.append(str(self.known_answer))
        return "\n".join(lines)


def _item_document(
    item: Any, allow_outside: Sequence[Any] = (), limits: DownloadLimits | None = None
) -> tuple[dict[str, Any], _HrefBase]:
    """The Item's JSON (structure checked) and where its hrefs may point; a remote Item is fetched first."""
    from mlm_export.stac.io import read_item_document, require_structure
    from mlm_export.transfer import fetch_item_document, is_remote, self_url

    if not isinstance(item, (str, os.PathLike, Mapping)) and not hasattr(item, "to_dict"):
        raise ConfigurationError(
            f"item must be a pystac.Item, a dict or a JSON path, got {type(item).__name__}.",
            hint="Pass the Item returned by export_item or the path of its JSON file.",
        )
    if isinstance(item, str) and is_remote(item):
        document, base, location = fetch_item_document(item, limits=limits), None, item
    else:
        document, base, location = read_item_document(item)
    require_structure(document, f"Item {location}" if location else "The item")
    remote = location if location and is_remote(location) else self_url(document) if base is None else None
    return document, _HrefBase(base, location is not None, tuple(allow_outside), remote, limits)


@dataclass(frozen=True)
class _HrefBase:
    """Where hrefs resolve: the Item's directory (hrefs confined to it) or its URL, and what else is allowed."""

    directory: Path | None
    confine: bool
    allow_outside: tuple[Any, ...] = ()
    remote: str | None = None
    limits: DownloadLimits | None = None  # bounds on every download (None: the defaults)


def _artifact_path(key: str, asset: Mapping[str, Any], where: _HrefBase) -> tuple[Path, bool]:
    """The local file of asset ``key``: a file inside the Item's directory, or the verified download of a URL.

    The flag says which: True for a file the artifact cache handed out after checking it against
    ``file:size``/``file:checksum`` (every hand-out is hashed), False for a local file (not checked here).

    Remote hrefs (``http(s)://``, ``s3://``, or relative to a remote Item's URL) are fetched into the artifact
    cache, checked against ``file:size``/``file:checksum`` before anything reads them (see :mod:`mlm_export.transfer`).
    A remote Item may not name local files (``file://``): refused without opening them.
    """
    from mlm_export.adapters.archive_safety import require_regular_file
    from mlm_export.stac.io import resolve_asset_href, resolve_href
    from mlm_export.transfer import fetch_artifact, is_remote
    from mlm_export.transfer import resolve_href as resolve_url

    href = str(asset["href"])
    if is_remote(href) or (where.remote is not None and urlparse(href).scheme == ""):
        url = resolve_url(href, where.remote)
        beside = resolve_href(f"./{Path(urlparse(url).path).name}", where.directory) if where.directory else None
        if beside is not None and beside.kind == "local" and beside.path is not None and beside.path.is_file():
            return beside.path, False  # exported with href_base: the file sits next to the Item
        fetched = fetch_artifact(
            url, size=asset.get("file:size"), checksum=asset.get("file:checksum"), limits=where.limits
        )
        return fetched, True
    _refuse_local_href_of_remote_item(key, href, where)
    resolved = resolve_asset_href(
        href, where.directory, where=f"Asset {key!r}", allow_outside=where.allow_outside, confine=where.confine,
        outside_hint="Only load Items whose model file lies next to them, or pass allow_outside= for a directory "
        "you trust.",
    )  # fmt: skip
    if resolved.kind in ("remote", "registry") or resolved.path is None:
        raise ConfigurationError(
            f"Asset {key!r} has the href {href!r}, which is neither a local path nor an http(s)/s3 URL.",
            hint="Point the href at a file, an http(s):// or an s3:// URL.",
        )
    return require_regular_file(resolved.path, f"Model file of asset {key!r}"), False


def _refuse_local_href_of_remote_item(key: str, href: str, where: _HrefBase) -> None:
    """A remote Item (an Item URL, or a dict/pystac Item whose ``self`` link is a URL) may not name local files."""
    if where.remote is not None and urlparse(href).scheme in ("", "file"):
        raise ItemValidationError(
            f"Asset {key!r} of the remote Item {where.remote} names the local file {href!r}; a remote Item may not "
            "name local files, so it was not opened.",
            hint="Load Items from sources you trust; a local model is loaded from a local Item file.",
        )


def _absolute_href(asset: Mapping[str, Any], where: _HrefBase) -> str:
    """The asset's href as an absolute URL or local path (not resolved through symlinks), for the set's layout."""
    from mlm_export.stac.io import decode_href
    from mlm_export.transfer import is_remote
    from mlm_export.transfer import resolve_href as resolve_url

    href = str(asset["href"])
    if is_remote(href) or (where.remote is not None and urlparse(href).scheme == ""):
        return resolve_url(href, where.remote)
    path = Path(decode_href(href))
    return str(path if path.is_absolute() or where.directory is None else where.directory / path)


#: ``stac_extensions`` entry of the MLM extension (any version).
_MLM_EXTENSION = re.compile(r"^https://stac-extensions\.github\.io/mlm/v\d+\.\d+\.\d+/schema\.json$")


def _model_key(document: Mapping[str, Any], asset_key: str | None) -> str:
    """The key of the asset to load: ``asset_key``, else the first asset with role ``mlm:model``."""
    assets = document.get("assets") or {}
    if asset_key is not None:
        if asset_key not in assets:
            raise ConfigurationError(f"asset_key={asset_key!r} is not an asset of the item ({sorted(assets)}).")
        return asset_key
    keys = [k for k, a in assets.items() if "mlm:model" in (a.get("roles") or [])]
    if not keys:
        raise ItemValidationError("The item has no asset with role 'mlm:model'.", hint="Export it with mlm-export.")
    return keys[0]


def _require_loadable(
    document: Mapping[str, Any], where: _HrefBase, asset_key: str | None, *, verify: bool, runnable: bool = False
) -> str:
    """The structural checks that need no download, run before any artifact is requested; the model asset's key.

    The Item must declare the MLM extension, its model asset an ``mlm:artifact_type``; every file the model needs
    must carry a sha2-256 ``file:checksum`` when it is remote (or when ``verify``); ``runnable`` (check_item) also
    needs at least one ``mlm:input`` and one ``mlm:output``.

    Raises:
        ItemValidationError: not an MLM Item, or a remote file without checksum, or nothing to run.
        UnverifiedArtifactError: ``verify`` and a local file without a sha2-256 checksum.
    """
    from mlm_export.artifact_set import member_keys
    from mlm_export.transfer import is_remote

    where_text = f"Item {where.remote}" if where.remote else "The item"
    extensions = document.get("stac_extensions") or []
    if not any(isinstance(e, str) and _MLM_EXTENSION.match(e) for e in extensions):
        raise ItemValidationError(
            f"{where_text} is not an MLM Item: its stac_extensions name no MLM schema "
            "(https://stac-extensions.github.io/mlm/vX.Y.Z/schema.json); nothing was downloaded.",
            hint="Pass an Item written by mlm-export (or another MLM tool).",
        )
    key = _model_key(document, asset_key)
    assets = document.get("assets") or {}
    if not assets[key].get("mlm:artifact_type"):
        raise ItemValidationError(f"Asset {key!r} has no 'mlm:artifact_type'.", hint="Validate the item.")
    for member in member_keys(assets, key)[1]:
        asset = assets[member]
        checksum = asset.get("file:checksum")
        sha256 = isinstance(checksum, str) and checksum.startswith("1220") and len(checksum) == 68
        remote = is_remote(str(asset["href"])) or where.remote is not None
        if remote and not checksum:
            raise ItemValidationError(
                f"The remote artifact {asset['href']!r} (asset {member!r}) has no file:checksum, so its bytes "
                "cannot be verified; not downloading.",
                hint="Ask the publisher for an Item with file:checksum, or download and check the file yourself.",
            )
        if verify and not sha256:
            raise UnverifiedArtifactError(
                f"Model file {asset['href']!r} of asset {member!r} cannot be verified: the item records no "
                "sha2-256 file:checksum, so a swapped file would load unnoticed; not loading it.",
                hint="Pass verify=False (--no-verify) only if you trust the file itself.",
            )
    if runnable:
        props = document.get("properties") or {}
        for name in ("mlm:input", "mlm:output"):
            if not props.get(name):
                raise ItemValidationError(
                    f"{where_text} declares no {name}: there is nothing to check the model against.",
                    hint="Export the Item with mlm-export, which records every input and output.",
                )
    return key


def _artifact_set(document: Mapping[str, Any], where: _HrefBase, key: str) -> tuple[list[ModelArtifact], Path]:
    """Every file the model of asset ``key`` needs (that one first), local and laid out by name; the file to open.

    Each member is resolved on its own (a file next to the Item, a local href, or a verified download); when the
    files do not already sit side by side as their hrefs lay them out (cache entries are named by checksum), they
    are hard-linked into a per-set directory of the cache (:func:`mlm_export.artifact_set.materialise`).
    """
    from mlm_export.artifact_cache import default_cache_dir
    from mlm_export.artifact_set import SHARD_INDEX_KEY, in_place, layout, materialise, member_keys

    assets = document.get("assets") or {}
    open_key, keys = member_keys(assets, key)
    ordered = [key, *(k for k in keys if k != key)]
    resolved = {k: _artifact_path(k, assets[k], where) for k in ordered}
    files = {k: path for k, (path, _) in resolved.items()}
    if len(files) > 1:
        names = layout({k: _absolute_href(assets[k], where) for k in ordered}, open_key)
        if not in_place(files, names, open_key):
            checksums = {k: str(assets[k].get("file:checksum") or "") for k in ordered}
            files = materialise(files, names, checksums, default_cache_dir())
    # a set's file is still the verified hand-out when it is a hard link of it (materialise copies when it cannot link)
    fetched = {k: ok and (files[k] == path or os.path.samefile(files[k], path)) for k, (path, ok) in resolved.items()}
    members = [
        ModelArtifact(
            k,
            files[k],
            assets[k].get("mlm:artifact_type") or ("index" if k == SHARD_INDEX_KEY else "data"),
            assets[k].get("file:size"),
            assets[k].get("file:checksum"),
            fetched[k],
        )  # fmt: skip
        for k in ordered
    ]
    return members, files[open_key]


def model_artifact(
    item: pystac.Item | Mapping[str, Any] | str | os.PathLike[str],
    asset_key: str | None = None,
    *,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
    limits: DownloadLimits | None = None,
) -> ModelArtifact:
    """Find the ``mlm:model`` asset of ``item`` (or ``asset_key``) and resolve it to a local file.

    A local href must resolve (``..`` and symlinks followed) inside the Item's directory or ``allow_outside``.

    Raises:
        ItemValidationError: the item is malformed, has no ``mlm:model`` asset, the asset has no
            ``mlm:artifact_type``, or its href points outside the allowed directories.
        ArtifactNotFoundError: the asset's file does not exist.
        ArtifactLoadError: the href names a directory, FIFO or other non-regular file.
        ChecksumMismatchError: a downloaded artifact differs from ``file:size``/``file:checksum``.
        DownloadError: a remote artifact cannot be fetched (see :func:`mlm_export.transfer.fetch_artifact`).
    """
    document, where = _item_document(item, allow_outside, limits)
    key = _require_loadable(document, where, asset_key, verify=False)
    members, _ = _artifact_set(document, where, key)
    return members[0]


def verify_artifact(artifact: ModelArtifact) -> None:
    """Check ``file:size`` and ``file:checksum`` of the file before it is loaded.

    Raises:
        ChecksumMismatchError: the size or the checksum differ.
        UnverifiedArtifactError: the item records no sha2-256 ``file:checksum`` (pass ``verify=False`` to the
            caller to load it anyway).
    """
    if artifact.checksum is None or not artifact.checksum.startswith("1220"):
        raise UnverifiedArtifactError(
            f"Model file '{artifact.path}' of asset {artifact.key!r} cannot be verified: the item records no "
            "sha2-256 file:checksum, so a swapped file would load unnoticed; not loading it.",
            hint="Pass verify=False (--no-verify) only if you trust the file itself.",
        )
    actual_size = artifact.path.stat().st_size
    if artifact.size is not None and artifact.size != actual_size:
        raise ChecksumMismatchError(
            f"'{artifact.path}' has {actual_size} bytes but the item records file:size {artifact.size}; "
            "not loading it.",
            hint="The file was changed or truncated: fetch it again.",
        )
    if not artifact.fetched:  # a cache hand-out was hashed against this checksum as it was handed out
        digest = hash_file(artifact.path)
        if digest.checksum != artifact.checksum:
            raise ChecksumMismatchError(
                f"'{artifact.path}' has checksum {digest.checksum} but the item records {artifact.checksum}; "
                "not loading it.",
                hint="The file was changed or replaced: fetch it again from a trusted source.",
            )


def _loader(artifact_type: str) -> Any:
    module = LOADERS.get(artifact_type)
    if module is None:
        raise UnsupportedSourceError(
            f"mlm:artifact_type {artifact_type!r} has no loader.", hint=f"Supported: {', '.join(sorted(LOADERS))}."
        )
    from mlm_export.adapters import _import_adapter

    return _import_adapter(module, f"an artifact of type {artifact_type!r}")


#: Artifact types that hold weights only: they need the model's class to be rebuilt.
WEIGHTS_TYPES = ("safetensors.torch.save_file", "torch.save")


def recorded_entrypoint(document: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The ``"pkg.module:Class"`` and keyword arguments an Item records for rebuilding its model.

    Read by :func:`~mlm_export.provenance.source_code.entrypoint_of_item` (a source-code asset's
    ``mlm:entrypoint``, else ``source_code.entrypoint``), else from ``mlm:hyperparameters["model_class"]``; the
    keyword arguments from ``mlm:hyperparameters["model_kwargs"]``.
    """
    from mlm_export.provenance.source_code import entrypoint_of_item

    props = document.get("properties") or {}
    hyper = props.get("mlm:hyperparameters") or {}
    entrypoint = entrypoint_of_item(document)
    if entrypoint is None and isinstance(hyper.get("model_class"), str):
        entrypoint = hyper["model_class"]
    kwargs = hyper.get("model_kwargs")
    return entrypoint, dict(kwargs) if isinstance(kwargs, Mapping) else {}


def _recorded_class(
    document: Mapping[str, Any], artifact: ModelArtifact, model_kwargs: Mapping[str, Any] | None, trust_code: bool
) -> tuple[Any, Mapping[str, Any] | None]:
    """The Item's recorded model class and kwargs, imported only with ``trust_code`` (else a typed refusal)."""
    entrypoint, recorded_kwargs = recorded_entrypoint(document)
    if entrypoint is None or artifact.artifact_type not in WEIGHTS_TYPES:
        return None, model_kwargs
    if not trust_code:
        raise UntrustedCodeError(
            f"The item records model_class {entrypoint!r} to rebuild '{artifact.path.name}'; importing it runs that "
            "code, and trust_code is off.",
            hint="Pass trust_code=True if you trust the item's code, or give model_class= yourself.",
        )
    return entrypoint, model_kwargs if model_kwargs is not None else recorded_kwargs


def load_model(
    item: pystac.Item | Mapping[str, Any] | str | os.PathLike[str],
    *,
    asset_key: str | None = None,
    model_class: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
    device: Any = "cpu",
    verify: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
    max_download_size: int | str | None = None,
    download_timeout: float | None = None,
) -> Any:
    """Load the model an Item publishes, after verifying its size and checksum.

    Args:
        item: a ``pystac.Item`` (e.g. a pystac-client hit), a dict, the path of an Item JSON file or its
            ``http(s)://``/``s3://`` URL. Remote artifacts are downloaded into the verified cache
            (:mod:`mlm_export.artifact_cache`) first.
        asset_key: the asset to load (default: the first with role ``mlm:model``).
        model_class: class or factory (or ``"pkg.mod:Class"``) that rebuilds a module from weights.
        model_kwargs: keyword arguments of ``model_class``.
        trust_pickle: allow unpickling arbitrary objects (trusted files only).
        trust_code: without ``model_class``, import the class the Item records (its source-code asset's
            ``mlm:entrypoint`` or ``mlm:hyperparameters.model_class``, with ``model_kwargs``); refused otherwise.
        device: where a PyTorch model is placed (ONNX: the execution provider follows it).
        verify: refuse a file whose size or sha2-256 differ from the Item, or that the Item gives no checksum for.
            ``False`` loads it unchecked (trusted files only).
        allow_outside: directories besides the Item's own that its local hrefs may point into.
        max_download_size: largest download of a remote Item or artifact, bytes or e.g. ``"8GB"`` (default:
            ``$MLM_EXPORT_MAX_DOWNLOAD_SIZE`` or 16 GiB; 0: no cap); an artifact's ``file:size`` bounds it too.
        download_timeout: seconds each whole download may take (default: none; a transfer slower than
            ``$MLM_EXPORT_MIN_DOWNLOAD_RATE``, 32 KiB/s, averaged over 60 s is stopped anyway).

    Returns:
        An ``nn.Module`` (for weights, TorchScript and ``torch.export`` artifacts) or an
        ``onnxruntime.InferenceSession``.

    Raises:
        ChecksumMismatchError: the file differs from the Item.
        DownloadLimitError: a download hit ``max_download_size``, ``download_timeout`` or the minimum rate.
        MLMExportError: a subclass naming what else failed.

    .. versionadded:: 0.1
    """
    limits = DownloadLimits.of(max_download_size, download_timeout)
    document, where = _item_document(item, allow_outside, limits)  # fetched once: every later step reads this snapshot
    key = _require_loadable(document, where, asset_key, verify=verify)
    return _load(document, where, key, model_class, model_kwargs, trust_pickle, trust_code, device, verify)[0]


def load_model_with_item(
    item: pystac.Item | Mapping[str, Any] | str | os.PathLike[str],
    *,
    model_class: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
    device: Any = "cpu",
    verify: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
    limits: DownloadLimits | None = None,
    known_answer: bool = False,
) -> tuple[Any, dict[str, Any], ModelArtifact]:
    """:func:`load_model`, and the Item snapshot it loaded from (the JSON dict) and the verified model artifact.

    For readers of the Item's metadata (``predict``): the model and the metadata come from one fetch of the Item.
    ``known_answer=True`` also reruns the model on the Item's published example (asset ``known-answer``).

    Raises:
        KnownAnswerMismatchError: ``known_answer`` and the rerun differs from the published output.
        ItemValidationError: ``known_answer`` and the Item publishes no ``known-answer`` asset.
    """
    document, where = _item_document(item, allow_outside, limits)
    key = _require_loadable(document, where, None, verify=verify, runnable=True)
    model, artifact = _load(document, where, key, model_class, model_kwargs, trust_pickle, trust_code, device, verify)
    if known_answer:
        from mlm_export.known_answer import require

        require(_known_answer(document, where, model, device, verify), where.remote)
    return model, dict(document), artifact


def _load(
    document: Mapping[str, Any],
    where: _HrefBase,
    key: str,
    model_class: Any,
    model_kwargs: Mapping[str, Any] | None,
    trust_pickle: bool,
    trust_code: bool,
    device: Any,
    verify: bool,
) -> tuple[Any, ModelArtifact]:
    """Fetch and verify every file of the model (see :func:`_artifact_set`), then load it by its artifact type."""
    members, opened = _artifact_set(document, where, key)
    artifact = members[0]
    if model_class is None:
        model_class, model_kwargs = _recorded_class(document, artifact, model_kwargs, trust_code)
    if verify:
        for member in members:  # every file the loader will open: external data, every shard and the index
            verify_artifact(member)
    load = LoadOptions(
        model_class=model_class, model_kwargs=dict(model_kwargs or {}), trust_pickle=trust_pickle, device=device
    )
    model = _loader(artifact.artifact_type).load_artifact(opened, artifact.artifact_type, ExportOptions(load=load))
    return model, artifact


def _check_shape(declared: Sequence[int], dim_order: Sequence[str]) -> tuple[int, ...]:
    return tuple(
        size if size >= 0 else CHECK_SIZES.get(name, 1) for size, name in zip(declared, dim_order, strict=True)
    )


def _matches(declared: Sequence[int], actual: Sequence[int]) -> bool:
    return len(declared) == len(actual) and all(d in (-1, a) for d, a in zip(declared, actual, strict=True))


def check_item(
    item: pystac.Item | Mapping[str, Any] | str | os.PathLike[str],
    *,
    asset_key: str | None = None,
    model_class: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
    device: Any = "cpu",
    max_dry_run_memory: int | str | None = None,
    dry_run_timeout: float | None = 600.0,
    verify: bool = True,
    allow_outside: Sequence[str | os.PathLike[str]] = (),
    max_download_size: int | str | None = None,
    download_timeout: float | None = None,
) -> CheckReport:
    """Load the Item's model (verified), run it on inputs built from ``mlm:input`` and compare every output.

    Takes the arguments of :func:`load_model` (``trust_code=True`` rebuilds the model from the class the Item
    records, so that no argument the export already had is needed again).

    Returns:
        A report: ``ok`` when the number of outputs, each shape (``-1`` matches any size) and each dtype agree, and,
        when the Item publishes a ``known-answer`` asset (fetched and verified like the model), the rerun on its
        example reproduces its output within the tolerances of :mod:`mlm_export.known_answer`
        (``report.known_answer``, ``report.max_difference``).

    The run has the caps of :func:`~mlm_export.export_item`'s dry-run: ``max_dry_run_memory`` (checked against a
    shape-only prediction before running) and ``dry_run_timeout`` (seconds).

    Raises:
        DryRunMemoryError: the rerun at the Item's input shapes ran out of memory (a ``ProbeError``).
        ProbeError: the model refuses the Item's input shapes.
        MLMExportError: the model cannot be loaded (see :func:`load_model`).

    .. versionadded:: 0.1
    """
    limits = DownloadLimits.of(max_download_size, download_timeout)
    document, where = _item_document(item, allow_outside, limits)  # fetched once: the report is about what was run
    key = _require_loadable(document, where, asset_key, verify=verify, runnable=True)
    model, artifact = _load(
        document, where, key, model_class, model_kwargs, trust_pickle, trust_code, device, verify
    )  # fmt: skip
    props = document.get("properties") or {}
    inputs = _check_inputs(props.get("mlm:input", []))
    produced: list[MeasuredTensor] = list(
        _loader(artifact.artifact_type).run_artifact(
            model,
            inputs,
            ExportOptions(
                load=LoadOptions(device=device),
                probe=ProbeOptions(max_dry_run_memory=max_dry_run_memory, dry_run_timeout=dry_run_timeout),
            ),
        )
    )
    checks, problems = _compare_outputs(props.get("mlm:output", []), produced)
    answer = _known_answer(document, where, model, device, verify)
    ok = all(c.ok for c in checks) and not problems and (answer is None or answer.ok)
    href = str(((document.get("assets") or {}).get(key) or {}).get("href") or "")
    return CheckReport(
        ok, artifact.path, artifact.artifact_type, tuple(s for _, s, _ in inputs), tuple(checks), tuple(problems),
        asset_key=key, file_name=href_file_name(href) or artifact.path.name, known_answer=answer,
    )  # fmt: skip


def _known_answer(
    document: Mapping[str, Any], where: _HrefBase, model: Any, device: Any, verify: bool
) -> KnownAnswerResult | None:
    """Rerun ``model`` on the Item's ``known-answer`` asset (fetched and verified like the model); None: none."""
    from mlm_export.known_answer import ASSET_KEY, compare

    asset = (document.get("assets") or {}).get(ASSET_KEY)
    if not isinstance(asset, Mapping):
        return None
    path, fetched = _artifact_path(ASSET_KEY, asset, where)
    if verify:
        verify_artifact(
            ModelArtifact(ASSET_KEY, path, "known-answer", asset.get("file:size"), asset.get("file:checksum"), fetched)
        )
    return compare(path, model, device)


def href_file_name(href: str) -> str:
    """The file name an href ends with (``https://host/v1/model.pt2?x=1`` -> ``model.pt2``; '' when none)."""
    from urllib.parse import unquote, urlsplit

    return unquote(PurePosixPath(urlsplit(href).path).name)


def _check_inputs(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, tuple[int, ...], str]]:
    """Name, concrete shape (see :func:`_check_shape`) and data type of each declared ``mlm:input``."""
    return [
        (
            str(spec["name"]),
            _check_shape(spec["input"]["shape"], spec["input"]["dim_order"]),
            spec["input"]["data_type"],
        )
        for spec in specs
    ]


def _compare_outputs(
    declared: Sequence[Mapping[str, Any]], produced: Sequence[MeasuredTensor]
) -> tuple[list[OutputCheck], list[str]]:
    """One check per declared ``mlm:output`` against the tensor produced in its place, and the undeclared outputs."""
    checks = []
    for index, spec in enumerate(declared):
        shape, dtype = tuple(spec["result"]["shape"]), spec["result"]["data_type"]
        if index >= len(produced):
            checks.append(
                OutputCheck(spec["name"], shape, dtype, None, None, False, "the model produced no such output")
            )
            continue
        out = produced[index]
        reasons = []
        if not _matches(shape, out.shape):
            reasons.append(f"shape {list(out.shape)} does not fit {list(shape)}")
        if out.data_type != dtype:
            reasons.append(f"data_type {out.data_type} is not {dtype}")
        checks.append(
            OutputCheck(spec["name"], shape, dtype, out.shape, out.data_type, not reasons, "; ".join(reasons))
        )
    problems = []
    if len(produced) > len(declared):
        extra = ", ".join(o.name for o in produced[len(declared) :])
        problems.append(f"the model produced {len(produced) - len(declared)} undeclared output(s): {extra}")
    return checks, problems


__all__ = [
    "CheckReport",
    "OutputCheck",
    "check_item",
    "load_model",
    "load_model_with_item",
    "model_artifact",
    "verify_artifact",
]
