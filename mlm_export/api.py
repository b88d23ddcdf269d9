"""``export_item``: source -> adapter -> ModelDescription -> overrides -> hashing -> Item -> validation -> publish.

The adapter measures and returns the writer of the artifacts it describes (:mod:`mlm_export.publishing`);
``export_item`` owns the run's one staging directory: write -> hash -> build -> validate -> publish by hard link
(never replacing a file unless ``overwrite=True``). A failure or a SIGINT/SIGTERM anywhere leaves nothing behind
but what was there before.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.adapters import ExportOptions, adapter_for
from mlm_export.description import ClassInfo, Link, ModelDescription, ValueScaling
from mlm_export.dryrun import DEFAULT_TIMEOUT_S
from mlm_export.errors import ConfigurationError, ItemValidationError, SourceError
from mlm_export.files import Staging, terminating_cleanly
from mlm_export.hashing import FileDigest, hash_file, start_background, take_background
from mlm_export.overrides import Overrides, embeddable_metadata, model_name_from
from mlm_export.publishing import Measured, artifact_directory, publish_with_retry, refuse_taken, write_staged

if TYPE_CHECKING:
    import pystac

logger = logging.getLogger(__name__)

#: Stands for a sha2-256 multihash still being computed (validity does not depend on the digest's digits).
PLACEHOLDER_CHECKSUM = "1220" + "0" * 64


@dataclass(frozen=True)
class _Build:
    """How the Item is built from the description (the arguments of ``export_item`` that are not measuring)."""

    item_id: str | None = None
    collection: str | None = None
    validate: bool = True
    schema_dir: str | os.PathLike[str] | None = None
    href_base: str | None = None
    progress: bool | None = None
    #: Source code, container, revision and references (:mod:`mlm_export.provenance`).
    provenance: Any = None
    suggest_batch_size: bool = False
    memory_budget: int | None = None
    known_answer: bool = False  # publish an example input and the output on it (mlm_export.known_answer)

    def item(self, described: ModelDescription) -> pystac.Item:
        hashed = hash_artifacts(described, href_base=self.href_base, progress=self.progress)
        return item_from_description(
            hashed, item_id=self.item_id, collection=self.collection, validate=self.validate,
            schema_dir=self.schema_dir, provenance=self.provenance,
        )  # fmt: skip


def export_item(
    model: Any,
    *,
    example_input: Any = None,
    input_shape: Any = None,
    input_dtype: Any = None,
    tasks: Sequence[str] | None = None,
    bands: Sequence[str | Mapping[str, Any]] | None = None,
    classes: Sequence[str | Mapping[str, Any] | ClassInfo] | None = None,
    name: str | None = None,
    item_id: str | None = None,
    collection: str | None = None,
    description: str | None = None,
    bbox: Sequence[float] | None = None,
    geometry: Mapping[str, Any] | None = None,
    datetime: str | dt.datetime | None = None,
    start_datetime: str | dt.datetime | None = None,
    end_datetime: str | dt.datetime | None = None,
    artifact_dir: str | os.PathLike[str] | None = None,
    artifact_format: str | None = None,
    model_class: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    device: Any = "cpu",
    trust_pickle: bool = False,
    value_scaling: Sequence[ValueScaling | Mapping[str, Any]] | Mapping[str, Any] | str | None = None,
    resize_type: str | None = None,
    none_applies: Sequence[str] | None = None,
    dim_orders: Mapping[str, Sequence[str]] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    pretrained: bool | None = None,
    pretrained_source: str | None = None,
    license: str | None = None,
    links: Sequence[Link] | None = None,
    href_base: str | None = None,
    probe_dynamic: bool = True,
    max_dry_run_memory: int | str | None = None,
    dry_run_timeout: float | None = DEFAULT_TIMEOUT_S,
    embed_metadata: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
    container: str | None = None,
    source_code: str | Mapping[str, str] | None = None,
    version: str | None = None,
    previous: Any = None,
    doi: str | None = None,
    citation: str | None = None,
    publications: Sequence[str | Mapping[str, Any]] | None = None,
    suggest_batch_size: bool = False,
    memory_budget: int | None = None,
    known_answer: bool = False,
) -> pystac.Item:
    """Measure ``model`` and return a valid MLM v1.5.2 STAC Item.

    Args:
        model: an ``nn.Module``, TorchScript module, ``ExportedProgram``, ``onnx.ModelProto`` or a model file.
        example_input: tensors for the dry-run (a tensor, tuple or dict).
        input_shape: shape(s) to dry-run with when there is no example input; -1 marks a dynamic dimension. The
            sizes given are where probing starts: a dimension the model also runs at other sizes is written -1,
            with a note (``probe_dynamic=False`` keeps the sizes given).
        input_dtype: dtype of the generated input (default float32).
        tasks: MLM tasks; inferred from the output shapes when omitted (the item description says so).
        bands: band names of the (first image) input, in channel order; for several inputs a mapping by input
            name (``{"optical": [...], "sar": ["VV", "VH"]}``).
        classes: class names, dicts or :class:`ClassInfo` for the classification/segmentation output.
        name: ``mlm:name``; defaults to the Item id (the class or file name, lowercase, plus the first 8 hex digits
            of the model file's sha2-256), so that it is distinct from ``mlm:architecture`` and unique.
        item_id: the Item id; defaults to the lowercase name plus the first 8 hex digits of the model's digest, and
            with ``version`` given, the version (``-v1_1_0`` for ``"1.1.0"``: two revisions get two ids).
        collection: collection id written on the Item, with a ``collection`` link to ``../collection.json`` (the
            local catalog layout) or to the ``collection`` link given in ``links``; :func:`mlm_export.save_item`
            keeps a local one only when that file exists (else neither link nor id, with a warning).
        description: free text for the Item.
        bbox: spatial extent [west, south, east, north] in WGS84; the whole globe (with a warning) when omitted.
        geometry: GeoJSON geometry of the extent; derived from ``bbox`` when omitted.
        datetime: a single date-time; defaults to now when no start/end is given.
        start_datetime: start of the model's temporal domain (with ``end_datetime``).
        end_datetime: end of the model's temporal domain.
        artifact_dir: where an in-memory model's weights are written (default ``./artifacts``).
        artifact_format: ``safetensors`` (default for modules), ``torch.save``, ``torchscript``, ``torch.export``
            or ``onnx``.
        model_class: class (or ``"pkg.mod:Class"``) that rebuilds a module from a state_dict / safetensors file;
            for an in-memory module, its own class when importable by name (a warning says when the Item cannot
            rebuild it; :mod:`mlm_export.provenance.rebuild_recipe`).
        model_kwargs: keyword arguments for ``model_class`` (default for an in-memory module: its ``hparams`` when
            they rebuild it).
        device: where the dry-run happens: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
        trust_pickle: allow unpickling arbitrary objects from the model file (only for files you trust).
        value_scaling: ``value_scaling`` entries of the (first) input, one per band or one for all (a mapping by
            input name for several inputs); ``"none"`` when
            no scaling applies (an explicit ``null``). Left out (with a warning) when unknown: MLM reads an omitted
            field as "none applies".
        resize_type: ``resize_type`` of the (first) input; ``"none"`` when no resizing applies.
        none_applies: other nullable fields that do not apply (written as ``null``): ``pre_processing_function``,
            ``post_processing_function`` (also ``value_scaling``, ``resize_type``).
        dim_orders: dim_order overrides by input/output name.
        hyperparameters: ``mlm:hyperparameters`` (merged over the measured ones).
        pretrained: whether the weights come from pre-training.
        pretrained_source: the pre-training dataset or source.
        license: SPDX license of the model.
        links: extra links (``derived_from`` with ``ml-aoi:split``, ``cite-as``...).
        href_base: public URL prefix for artifact hrefs instead of local paths.
        probe_dynamic: probe batch/spatial/temporal dims (one run only when False: the sizes of ``input_shape`` or
            the example are written as given, -1 stays dynamic).
        max_dry_run_memory: cap on the dry-run's predicted peak memory, weights included (bytes or "8GB"); the
            prediction (a shape-only forward) is checked before each real forward. Default: the weights plus 80 %
            of the memory free when it starts; 0 for no cap.
        dry_run_timeout: wall-clock limit of the dry-run in seconds (None: no limit).
        embed_metadata: write the MLM properties into the artifact's own metadata where the format allows.
        overwrite: replace artifact files already in ``artifact_dir`` (refused by default: an earlier item may
            point to them); the old file is replaced only once the new Item validated.
        progress: progress bars for hashing (default: on a terminal, for large files).
        validate: validate the Item against the schemas and semantic checks before returning it.
        schema_dir: offline schema directory (see :func:`mlm_export.validate_item`).
        container: OCI image reference that runs the model (``registry/name:tag`` or ``@sha256:...``): the
            ``mlm:container`` asset. Checked for shape, never pulled.
        source_code: http(s) URL of the model's code (a repository at a commit, or a file), or
            ``{"href": URL, "entrypoint": "pkg.module:Class"}``: the ``mlm:source_code`` asset, with
            ``model_class``'s entrypoint by default. Given, it replaces the detected one (no detection runs).
        version: ``version`` of this Item (Version extension).
        previous: the Item this one supersedes (JSON path, URL or saved ``pystac.Item``): a
            ``predecessor-version`` link, and its collection is shared; :func:`mlm_export.save_item` then links
            the earlier Items to this one.
        doi: DOI of the model (``sci:doi``).
        citation: how to cite the model (``sci:citation``).
        publications: DOIs or ``{"doi", "citation"}`` dicts of papers describing the model (``sci:publications``).
        suggest_batch_size: measure ``mlm:batch_size_suggestion`` by timing forward passes at batch 1, 2, 4...
            (costs seconds; in-memory PyTorch modules). See :mod:`mlm_export.batch_size`.
        memory_budget: bytes the batch-size search may use (default: free device memory / RAM with headroom).
        known_answer: also publish the asset ``known-answer``: a seeded example input and the model's output on it
            (one safetensors file, beside the model file), that ``check_item`` reruns (:mod:`mlm_export.known_answer`).


    Returns:
        The Item; local artifact hrefs are absolute until :func:`mlm_export.save_item` makes them relative.

    Raises:
        MLMExportError: a subclass naming what failed and what to do.

    .. versionadded:: 0.1
    """
    if isinstance(model, (str, os.PathLike)):  # hashing runs beside the framework's import and the dry-run
        start_background(model, progress=progress)
    from mlm_export.provenance.item import provenance_from

    # Provenance arguments are checked (and the source code found) before any dry-run.
    provenance = provenance_from(
        model, model_class=model_class, container=container, version=version, previous=previous, doi=doi,
        citation=citation, publications=publications, links=links, source_code=source_code,
    )  # fmt: skip
    hyperparameters = _with_rebuild_recipe(hyperparameters, model, model_class, model_kwargs)
    if known_answer and artifact_dir is None and isinstance(model, (str, os.PathLike)):
        artifact_dir = Path(os.path.abspath(model)).parent  # the known-answer file sits beside the model file
    given = Overrides(
        tasks=tasks, bands=bands, classes=classes, name=name, description=description, value_scaling=value_scaling,
        resize_type=resize_type, none_applies=none_applies, pretrained=pretrained, pretrained_source=pretrained_source,
        license=license,
        bbox=bbox, geometry=geometry, datetime=datetime, start_datetime=start_datetime, end_datetime=end_datetime,
        dim_orders=dim_orders, hyperparameters=hyperparameters, links=links,
    )  # fmt: skip
    options = export_options(
        example_input=example_input, input_shape=input_shape, input_dtype=input_dtype, artifact_dir=artifact_dir,
        artifact_format=artifact_format, model_class=model_class, model_kwargs=model_kwargs, device=device,
        trust_pickle=trust_pickle, probe_dynamic=probe_dynamic, embed_metadata=embed_metadata, overwrite=overwrite,
        max_dry_run_memory=max_dry_run_memory, dry_run_timeout=dry_run_timeout,
        metadata=given.embeddable(),
    )  # fmt: skip
    adapter = adapter_for(model)
    _check_unmeasured(given, href_base)
    build = _Build(
        item_id, collection, validate, schema_dir, href_base, progress, provenance, suggest_batch_size, memory_budget,
        known_answer,
    )  # fmt: skip
    with Staging(artifact_directory(options.artifact.artifact_dir)) as staging, terminating_cleanly():
        return _export(adapter.measure, model, options, given, build, staging)


def _with_rebuild_recipe(
    hyperparameters: Mapping[str, Any] | None, model: Any, model_class: Any, model_kwargs: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """``hyperparameters`` plus how to rebuild the model from the weights (``model_class`` and ``model_kwargs``).

    So that ``check`` needs no flag the export already had. For an in-memory module they are read from the module
    (:mod:`mlm_export.provenance.rebuild_recipe`) when not given; a warning says when the Item cannot rebuild it.
    """
    from mlm_export.provenance.rebuild_recipe import recipe_of, warn_unrebuildable

    recipe = recipe_of(model, model_class=model_class, model_kwargs=model_kwargs)
    if recipe is not None and model_kwargs is None and recipe.model_kwargs:
        model_kwargs = recipe.model_kwargs
    hyperparameters = _with_model_kwargs(hyperparameters, model_kwargs)
    entrypoint = entrypoint_of(model_class) if model_class is not None else (recipe and recipe.model_class)
    if entrypoint is not None and "model_class" not in (hyperparameters or {}):
        hyperparameters = {**(hyperparameters or {}), "model_class": entrypoint}
    if recipe is not None and recipe.missing is not None and recipe.missing[1] not in (hyperparameters or {}):
        warn_unrebuildable(recipe, stacklevel=4)
    return hyperparameters


def _check_unmeasured(given: Overrides, href_base: str | None) -> None:
    """Check the arguments that need no measurement first, so that a typo costs no dry-run.

    Raises:
        ConfigurationError: an override or ``href_base`` is malformed.
    """
    given.check()
    if href_base is not None:
        from mlm_export.stac.writer import check_href

        check_href(href_base, "href_base")


def _with_model_kwargs(
    hyperparameters: Mapping[str, Any] | None, model_kwargs: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """``hyperparameters`` plus ``model_kwargs`` (JSON data only), so the Item alone can rebuild the model."""
    if not model_kwargs:
        return hyperparameters
    try:
        kwargs = json.loads(json.dumps(dict(model_kwargs), allow_nan=False))
    except (TypeError, ValueError):
        import warnings

        warnings.warn(
            "model_kwargs are not JSON data: they are left out of mlm:hyperparameters, so the model cannot be "
            "rebuilt from the Item alone.",
            stacklevel=4,
        )
        return hyperparameters
    return {"model_kwargs": kwargs, **(hyperparameters or {})}


def export_options(*, model_kwargs: Mapping[str, Any] | None = None, **values: Any) -> ExportOptions:
    """The adapters' options from ``export_item``'s measuring arguments (checked).

    Raises:
        ConfigurationError: ``model_kwargs`` is not a mapping.
    """
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise ConfigurationError(
            f"model_kwargs={model_kwargs!r} is not a mapping.", hint="Pass a dict of model_class's keyword arguments."
        )
    if values.get("artifact_dir") is not None:
        values["artifact_dir"] = Path(values["artifact_dir"])
    return ExportOptions.from_flat(model_kwargs=dict(model_kwargs or {}), **values)


def _export(
    measure: Any, model: Any, options: ExportOptions, given: Overrides, build: _Build, staging: Staging
) -> pystac.Item:
    """Measure -> write (staged) -> hash -> build -> validate -> publish; the caller's ``Staging`` cleans up."""
    # A model file is hashed in a background thread while the adapter loads and dry-runs it and the item is built
    # and validated (hashlib releases the GIL), so exporting costs little more than hashing alone.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlm-export-hash") as pool:
        pending: dict[str, Future[FileDigest]] = {}
        if isinstance(model, (str, os.PathLike)):
            early = take_background(model)  # started by export_item (or the CLI) before the heavy imports
            pending[str(Path(model).resolve())] = early or pool.submit(hash_file, model, progress=build.progress)
        try:
            measured = measure(model, options.updated(scratch=lambda: staging.path))
            refuse_taken(measured, overwrite=options.artifact.overwrite)
            staged = write_staged(measured, staging)
            digests = {final: _staged_digest(path, build.progress) for final, path in staged.items()}
            # The checksum's digits do not change validity: the item is built and validated with a placeholder
            # for the model file's checksum while its hash is still running, then the real one is filled in.
            digests.update({p: FileDigest(Path(p), Path(p).stat().st_size, PLACEHOLDER_CHECKSUM) for p in pending})
            described, writer = given.apply_with_embedded(measured.description), measured.writer
            if build.known_answer:
                from mlm_export.known_answer import stage

                described, writer = stage(model, described, writer, staged, options, staging)
            if build.suggest_batch_size:
                from mlm_export.batch_size import measured_batch_size

                described = measured_batch_size(model, described, options, memory_budget=build.memory_budget)
            described = hash_artifacts(described, href_base=build.href_base, digests=digests)
            item = build.item(described)
            _fill_checksums(item, described, pending)
            _published, renamed = publish_with_retry(
                Measured(described, writer),
                staging,
                overwrite=options.artifact.overwrite,
                rebuild=lambda m: build.item(m.description),
            )
            if renamed is not None:
                item = renamed
                _fill_checksums(item, described, pending)
            name_given = given.name is not None or "name" in measured.description.embedded
            _default_names(item, described, build.item_id, name_given=name_given)
            for note in described.notes:
                logger.warning("%s", note, extra={"mlm_note": True})  # the CLI prints "note: ..." as inspect does
            return item
        except BaseException:
            for future in pending.values():
                future.cancel()
            raise


def _staged_digest(path: Path, progress: bool | None) -> FileDigest:
    """The digest of a written file: kept by a writer that hashed it while writing it, else read and hashed."""
    known = take_background(path)
    return known.result() if known is not None else hash_file(path, progress=progress)


def entrypoint_of(model_class: Any) -> str | None:
    """``"pkg.module:Class"`` for a ``model_class`` string or an importable class (None for lambdas, ``__main__``)."""
    from mlm_export.provenance.source_code import entrypoint_of as entrypoint_of_object

    return model_class if isinstance(model_class, str) else entrypoint_of_object(model_class)


def _default_names(item: pystac.Item, described: ModelDescription, item_id: str | None, *, name_given: bool) -> None:
    """Default id (and ``mlm:name``) from the final digest: lowercase name + 8 hex digits of the model's sha2-256."""
    from mlm_export.stac.builder import default_item_id, versioned_item_id

    model = next((a for a in described.artifacts if a.is_model), None)
    checksum = item.assets[model.key].extra_fields.get("file:checksum") if model and model.key in item.assets else None
    if model is not None and isinstance(checksum, str):
        described = described.replace(
            artifacts=tuple(replace(a, file_checksum=checksum) if a is model else a for a in described.artifacts)
        )
    default = default_item_id(described, with_digest=True)
    if item_id is None:  # two versions of one model get two ids (see versioned_item_id)
        version = item.properties.get("version")
        item.id = versioned_item_id(default, version if isinstance(version, str) else None)
    if not name_given:
        item.properties["mlm:name"] = default


def _fill_checksums(item: pystac.Item, described: ModelDescription, pending: Mapping[str, Future[FileDigest]]) -> None:
    """Put the model file's real checksum where the placeholder is, once its background hash is done.

    Raises:
        SourceError: the file changed size while it was exported.
    """
    from pystac.extensions.file import FileExtension

    for artifact in described.artifacts:
        if artifact.path is not None and artifact.file_checksum == PLACEHOLDER_CHECKSUM:
            digest = pending[str(Path(artifact.path).resolve())].result()
            if digest.size != artifact.file_size:
                raise SourceError(
                    f"'{artifact.path}' changed while it was exported ({artifact.file_size} -> {digest.size} bytes).",
                    hint="Export it again once nothing writes to it.",
                )
            FileExtension.ext(item.assets[artifact.key]).checksum = digest.checksum


def inspect_model(model: str | os.PathLike[str] | Any, **options: Any) -> ModelDescription:
    """Measure ``model`` like :func:`export_item` and return its description, writing nothing.

    Takes the measuring options of :func:`export_item` (``example_input``, ``input_shape``, ``input_dtype``,
    ``model_class``, ``model_kwargs``, ``device``, ``trust_pickle``, ``probe_dynamic``, ``artifact_format``,
    ``artifact_dir``, ``max_dry_run_memory``, ``dry_run_timeout``) and its overrides (``tasks``, ``bands``,
    ``classes``, ``name``...). An in-memory module's artifact is described where ``export_item`` would write it
    (path only: no size, no checksum); nothing is written, whatever the source (an ONNX export happens in a
    temporary directory that is removed).

    Raises:
        ConfigurationError: an option is unknown or invalid.

    .. versionadded:: 0.1
    """
    given = Overrides.pop_from(options)
    unknown = sorted(set(options) - ExportOptions.flat_names() - {"scratch"})
    if unknown:
        raise ConfigurationError(
            f"inspect_model() got unknown option(s) {', '.join(unknown)}.",
            hint="Use the measuring and describing arguments of export_item.",
        )
    options.pop("scratch", None)
    measured = adapter_for(model).measure(model, export_options(**options, metadata=given.embeddable()))
    return given.apply_with_embedded(measured.description)


def item_from_description(
    described: ModelDescription,
    *,
    item_id: str | None = None,
    collection: str | None = None,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
    provenance: Any = None,
) -> pystac.Item:
    """Build the Item of a finished description and (by default) validate it.

    Raises:
        ItemValidationError: the Item fails the schemas or the semantic checks.
    """
    from mlm_export.stac.builder import build_item

    item = build_item(described, item_id=item_id, collection=collection, provenance=provenance)
    if validate:
        from mlm_export.stac.validate import validate_item

        # The checksums were computed from the files a moment ago: hashing them again would double the cost.
        report = validate_item(item, schema_dir=schema_dir, check_files=False)
        if not report.valid:
            raise ItemValidationError(
                f"The item built for {described.name!r} is invalid: {report.problems[0]}",
                problems=report.problems,
                hint="Fix the argument named in the message; if it is a measured value, please report a bug.",
            )
    return item


def hash_artifacts(
    described: ModelDescription,
    *,
    href_base: str | None = None,
    progress: bool | None = None,
    digests: Mapping[str, FileDigest] | None = None,
) -> ModelDescription:
    """Fill ``file:size``/``file:checksum`` of every local artifact; point hrefs at ``href_base`` when given.

    ``digests`` maps resolved paths to digests already computed (staged files, or a placeholder while a model
    file is still being hashed); those paths are not read again.
    """
    from mlm_export.stac.io import encode_href

    artifacts = []
    for artifact in described.artifacts:
        if artifact.path is not None and artifact.file_checksum is None:
            known = (digests or {}).get(str(Path(artifact.path).resolve()))
            digest = known if known is not None else hash_file(artifact.path, progress=progress)
            artifact = replace(artifact, file_size=digest.size, file_checksum=digest.checksum)
        if href_base and artifact.path is not None and artifact.href is None:
            artifact = replace(artifact, href=href_base.rstrip("/") + "/" + encode_href(Path(artifact.path).name))
        artifacts.append(artifact)
    return described.replace(artifacts=tuple(artifacts))


def apply_overrides(described: ModelDescription, **overrides: Any) -> ModelDescription:
    """Apply what the caller knows on top of what was measured; infer tasks and classes when not given.

    Takes the fields of :class:`mlm_export.overrides.Overrides` as keyword arguments.

    Raises:
        ConfigurationError: an override is invalid or does not fit the model.
    """
    return Overrides(**overrides).apply(described)


__all__ = [
    "apply_overrides",
    "embeddable_metadata",
    "export_item",
    "export_options",
    "hash_artifacts",
    "inspect_model",
    "item_from_description",
    "model_name_from",
]
