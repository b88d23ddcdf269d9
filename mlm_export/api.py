"""``export_item``: source -> adapter -> ModelDescription -> overrides -> hashing -> Item -> validation."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlm_export.adapters import ExportOptions, adapter_for
from mlm_export.description import (
    Band,
    ClassInfo,
    InputSpec,
    Link,
    ModelDescription,
    OutputSpec,
    ValueScaling,
    classes_from,
)
from mlm_export.errors import ConfigurationError, DescriptionError, ItemValidationError, SourceError
from mlm_export.hashing import FileDigest, hash_file
from mlm_export.probing import infer_output_task

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pystac

#: Stands for a sha2-256 multihash still being computed (validity does not depend on the digest's digits).
PLACEHOLDER_CHECKSUM = "1220" + "0" * 64
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-\s]+[a-zA-Z0-9]$")
CLASS_TASKS = ("classification", "scene-classification", "semantic-segmentation", "segmentation",
               "instance-segmentation", "panoptic-segmentation", "object-detection", "detection")  # fmt: skip


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
    value_scaling: Sequence[ValueScaling | Mapping[str, Any]] | str | None = None,
    resize_type: str | None = None,
    none_applies: Sequence[str] | None = None,
    dim_orders: Mapping[str, Sequence[str]] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    pretrained: bool | None = None,
    pretrained_source: str | None = None,
    license: str | None = None,  # noqa: A002 - the STAC field's name
    links: Sequence[Link] | None = None,
    href_base: str | None = None,
    probe_dynamic: bool = True,
    embed_metadata: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
) -> pystac.Item:
    """Measure ``model`` and return a valid MLM v1.5.2 STAC Item.

    Args:
        model: an ``nn.Module``, TorchScript module, ``ExportedProgram``, ``onnx.ModelProto`` or a model file.
        example_input: tensors for the dry-run (a tensor, tuple or dict).
        input_shape: shape(s) to dry-run with when there is no example input; -1 marks a dynamic dimension.
        input_dtype: dtype of the generated input (default float32).
        tasks: MLM tasks; inferred from the output shapes when omitted (the item description says so).
        bands: band names of the (first image) input, in channel order; for several inputs a mapping by input
            name (``{"optical": [...], "sar": ["VV", "VH"]}``).
        classes: class names, dicts or :class:`ClassInfo` for the classification/segmentation output.
        name: ``mlm:name``; defaults to the Item id (the class or file name, lowercase, plus the first 8 hex digits
            of the model file's sha2-256), so that it is distinct from ``mlm:architecture`` and unique.
        item_id: the Item id; defaults to the lowercase name plus the first 8 hex digits of the model's digest.
        collection: collection id written on the Item, with a ``collection`` link to ``../collection.json`` (the
            local catalog layout).
        description: free text for the Item.
        bbox: spatial extent [west, south, east, north] in WGS84; the whole globe (with a warning) when omitted.
        geometry: GeoJSON geometry of the extent; derived from ``bbox`` when omitted.
        datetime: a single date-time; defaults to now when no start/end is given.
        start_datetime: start of the model's temporal domain (with ``end_datetime``).
        end_datetime: end of the model's temporal domain.
        artifact_dir: where an in-memory model's weights are written (default ``./artifacts``).
        artifact_format: ``safetensors`` (default for modules), ``torch.save``, ``torchscript``, ``torch.export``
            or ``onnx``.
        model_class: class (or ``"pkg.mod:Class"``) that rebuilds a module from a state_dict / safetensors file.
        model_kwargs: keyword arguments for ``model_class``.
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
        probe_dynamic: probe batch/spatial/temporal dims (one run only when False).
        embed_metadata: write the MLM properties into the artifact's own metadata where the format allows.
        overwrite: replace artifact files already in ``artifact_dir`` (refused by default: an earlier item may
            point to them).
        progress: progress bars for hashing (default: on a terminal, for large files).
        validate: validate the Item against the schemas and semantic checks before returning it.
        schema_dir: offline schema directory (see :func:`mlm_export.validate_item`).

    Returns:
        The Item; local artifact hrefs are absolute until :func:`mlm_export.save_item` makes them relative.

    Raises:
        MLMExportError: a subclass naming what failed and what to do.

    .. versionadded:: 0.1
    """
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise ConfigurationError(
            f"model_kwargs={model_kwargs!r} is not a mapping.", hint="Pass a dict of model_class's keyword arguments."
        )
    options = ExportOptions(
        example_input=example_input,
        input_shape=input_shape,
        input_dtype=input_dtype,
        artifact_dir=Path(artifact_dir) if artifact_dir is not None else None,
        artifact_format=artifact_format,
        model_class=model_class,
        model_kwargs=dict(model_kwargs or {}),
        device=device,
        trust_pickle=trust_pickle,
        probe_dynamic=probe_dynamic,
        embed_metadata=embed_metadata,
        overwrite=overwrite,
        progress=progress,
        metadata=embeddable_metadata(
            name=name,
            tasks=tasks,
            bands=bands,
            classes=classes,
            description=description,
            value_scaling=value_scaling,
            resize_type=resize_type,
            pretrained=pretrained,
            pretrained_source=pretrained_source,
            license=license,
        ),
    )
    adapter = adapter_for(model)
    # Arguments that need no measurement are checked first, so a typo costs no dry-run.
    _extent({"bbox": bbox, "geometry": geometry, "datetime": datetime, "start_datetime": start_datetime,
             "end_datetime": end_datetime})  # fmt: skip
    if name is not None:
        _check_name(name)
    if href_base is not None:
        from mlm_export.stac.writer import check_href

        check_href(href_base, "href_base")
    output_dir = (options.artifact_dir or Path.cwd() / "artifacts").resolve()
    existing = set(output_dir.rglob("*")) if output_dir.is_dir() else None
    # What the caller says about the model; values embedded in the artifact fill the ones left out (None).
    given = {
        "tasks": tasks,
        "bands": bands,
        "classes": classes,
        "name": name,
        "description": description,
        "value_scaling": value_scaling,
        "resize_type": resize_type,
        "pretrained": pretrained,
        "pretrained_source": pretrained_source,
        "license": license,
    }
    entrypoint = entrypoint_of(model_class)
    if entrypoint is not None and "model_class" not in (hyperparameters or {}):
        # How to rebuild the model from the weights, so that `check` needs no flag the export already had.
        hyperparameters = {**(hyperparameters or {}), "model_class": entrypoint}
        if model_kwargs:
            hyperparameters.setdefault("model_kwargs", dict(model_kwargs))
    fixed = {
        "none_applies": none_applies,
        "bbox": bbox,
        "geometry": geometry,
        "datetime": datetime,
        "start_datetime": start_datetime,
        "end_datetime": end_datetime,
        "dim_orders": dim_orders,
        "hyperparameters": hyperparameters,
        "links": links,
    }
    build = {"item_id": item_id, "collection": collection, "schema_dir": schema_dir}
    measured: ModelDescription | None = None
    # A model file is hashed in a background thread while the adapter loads and dry-runs it and the item is built
    # and validated (hashlib releases the GIL), so exporting costs little more than hashing alone.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlm-export-hash") as pool:
        pending: dict[str, Future[FileDigest]] = {}
        if isinstance(model, (str, os.PathLike)):
            pending[str(Path(model).resolve())] = pool.submit(hash_file, model, progress=progress)
        try:
            measured = adapter.describe(model, options)
            given.update({k: v for k, v in measured.embedded.items() if k in given and given[k] is None})
            described = apply_overrides(measured, **given, **fixed)
            # The checksum's digits do not change validity: the item is built and validated with a placeholder
            # for the model file's checksum while its hash is still running, then the real one is filled in.
            placeholders = {p: FileDigest(Path(p), Path(p).stat().st_size, PLACEHOLDER_CHECKSUM) for p in pending}
            described = hash_artifacts(described, href_base=href_base, progress=progress, digests=placeholders)
            item = item_from_description(described, validate=validate, **build)
            from pystac.extensions.file import FileExtension

            for artifact in described.artifacts:
                if artifact.path is not None and artifact.file_checksum == PLACEHOLDER_CHECKSUM:
                    digest = pending[str(Path(artifact.path).resolve())].result()
                    if digest.size != artifact.file_size:
                        raise SourceError(
                            f"'{artifact.path}' changed while it was exported ({artifact.file_size} -> {digest.size} "
                            "bytes).",
                            hint="Export it again once nothing writes to it.",
                        )
                    FileExtension.ext(item.assets[artifact.key]).checksum = digest.checksum
                    described = described.replace(
                        artifacts=tuple(
                            replace(a, file_checksum=digest.checksum) if a.key == artifact.key else a
                            for a in described.artifacts
                        )
                    )
            _name_after_digest(item, described, item_id=item_id, name_given=given["name"] is not None)
            for note in described.notes:
                logger.warning("%s", note)
            return item
        except BaseException:
            for future in pending.values():
                future.cancel()
            if measured is not None:
                _remove_new_artifacts(measured, output_dir, existing)
            raise


def entrypoint_of(model_class: Any) -> str | None:
    """``"pkg.module:Class"`` for a ``model_class`` string or an importable class (None for lambdas, ``__main__``)."""
    if isinstance(model_class, str):
        return model_class
    module, qualname = getattr(model_class, "__module__", None), getattr(model_class, "__qualname__", "")
    if not isinstance(module, str) or module == "__main__" or "<" in qualname or not qualname:
        return None
    return f"{module}:{qualname}"


def _name_after_digest(
    item: pystac.Item, described: ModelDescription, *, item_id: str | None, name_given: bool
) -> None:
    """Default id (and ``mlm:name``) from the final digest: lowercase name + 8 hex digits of the model's sha2-256."""
    from mlm_export.stac.builder import default_item_id

    default = default_item_id(described, with_digest=True)
    if item_id is None:
        item.id = default
    if not name_given:
        item.properties["mlm:name"] = default


def _remove_new_artifacts(measured: ModelDescription, output_dir: Path, existing: set[Path] | None) -> None:
    """Delete the artifacts this export wrote into ``output_dir`` (and the directory if it made it)."""
    for artifact in measured.artifacts:
        if artifact.path is None:
            continue
        path = Path(artifact.path).resolve()
        if path.is_relative_to(output_dir) and (existing is None or path not in existing):
            path.unlink(missing_ok=True)
    if existing is None and output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def embeddable_metadata(**values: Any) -> dict[str, Any]:
    """The caller's values as JSON-safe data, for artifacts that embed them (safetensors, .pt2, ONNX).

    ``export_item`` on such an artifact reads them back and uses them where the caller passes nothing.
    """
    result: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key in ("bands", "value_scaling") and isinstance(value, Mapping):  # by input name (several inputs)
            value = {str(k): embeddable_metadata(**{key: v})[key] for k, v in value.items()}
        elif key in ("tasks", "bands"):
            value = [v if isinstance(v, str) else dict(v) for v in value]
        elif key == "classes":
            value = [c.to_dict() for c in classes_from(value)]
        elif key == "value_scaling" and not isinstance(value, str):
            value = [v.to_dict() if isinstance(v, ValueScaling) else dict(v) for v in value]
        result[key] = value
    return result


def inspect_model(model: str | os.PathLike[str] | Any, **options: Any) -> ModelDescription:
    """Measure ``model`` like :func:`export_item` and return its description, writing nothing.

    Takes the measuring options of :func:`export_item` (``example_input``, ``input_shape``, ``input_dtype``,
    ``model_class``, ``model_kwargs``, ``device``, ``trust_pickle``, ``probe_dynamic``) and its overrides
    (``tasks``, ``bands``, ``classes``, ``name``...). In-memory modules need ``artifact_dir`` since their weights
    are written to be described; files are described where they are.

    .. versionadded:: 0.1
    """
    measuring = {k: options.pop(k) for k in list(options) if k in ExportOptions.__dataclass_fields__}
    if "artifact_dir" in measuring and measuring["artifact_dir"] is not None:
        measuring["artifact_dir"] = Path(measuring["artifact_dir"])
    measured = adapter_for(model).describe(model, ExportOptions(**measuring))
    defaults = {k: v for k, v in measured.embedded.items() if options.get(k) is None}
    return apply_overrides(measured, **{**options, **defaults})


def item_from_description(
    described: ModelDescription,
    *,
    item_id: str | None = None,
    collection: str | None = None,
    validate: bool = True,
    schema_dir: str | os.PathLike[str] | None = None,
) -> pystac.Item:
    """Build the Item of a finished description and (by default) validate it.

    Raises:
        ItemValidationError: the Item fails the schemas or the semantic checks.
    """
    from mlm_export.stac.builder import build_item

    item = build_item(described, item_id=item_id, collection=collection)
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

    ``digests`` maps resolved paths to digests already computed (they are used when the file is unchanged).
    """
    from mlm_export.stac.io import encode_href

    artifacts = []
    for artifact in described.artifacts:
        if artifact.path is not None and artifact.file_checksum is None:
            known = (digests or {}).get(str(Path(artifact.path).resolve()))
            stat = Path(artifact.path).stat() if known is not None else None
            fresh = known is not None and stat is not None and stat.st_size == known.size
            digest = known if fresh else hash_file(artifact.path, progress=progress)
            artifact = replace(artifact, file_size=digest.size, file_checksum=digest.checksum)
        if href_base and artifact.path is not None and artifact.href is None:
            artifact = replace(artifact, href=href_base.rstrip("/") + "/" + encode_href(Path(artifact.path).name))
        artifacts.append(artifact)
    return described.replace(artifacts=tuple(artifacts))


def model_name_from(text: str) -> str:
    """A valid ``mlm:name`` from a class or file name (letters first, letter/digit last)."""
    cleaned = re.sub(r"[^a-zA-Z0-9_.\-\s]+", "-", text).strip(" _.-")
    cleaned = re.sub(r"^[^a-zA-Z]+", "", cleaned)
    if len(cleaned) < 3:
        cleaned = f"model-{cleaned}" if cleaned else "model"
    return cleaned


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigurationError(
            f"name={name!r} is not a valid mlm:name.",
            hint="Use at least 3 characters: a letter first, then letters, digits, '_', '.', '-' or spaces, "
            "ending with a letter or digit.",
        )
    return name


def _channel_axis(spec: InputSpec) -> int | None:
    for candidate in ("channel", "bands"):
        if candidate in spec.dim_order:
            return spec.dim_order.index(candidate)
    return None


def _band_definitions(bands: Sequence[str | Mapping[str, Any]], argument: str) -> tuple[Band, ...]:
    definitions = tuple(
        Band(name=str(b)) if isinstance(b, str) else Band(name=str(b["name"]), description=b.get("description"))
        for b in bands
    )
    names = [b.name for b in definitions]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{argument}={names} repeats a name.", hint="Give each band once, in channel order.")
    return definitions


def _input_named(inputs: list[InputSpec], name: str, argument: str) -> int:
    for index, spec in enumerate(inputs):
        if spec.name == name:
            return index
    raise ConfigurationError(
        f"{argument} names input {name!r}, which the model does not have ({[s.name for s in inputs]}).",
        hint="Key the mapping by the input names that inspect_model / mlm-export inspect shows.",
    )


def _set_bands(inputs: list[InputSpec], index: int, names: tuple[str, ...], argument: str) -> bool:
    """Put ``names`` on input ``index`` (its channel axis becomes ``bands``); False when it has no channel axis."""
    spec = inputs[index]
    axis = _channel_axis(spec)
    if axis is None:
        return False
    size = spec.shape[axis]
    if size not in (-1, len(names)):
        raise ConfigurationError(
            f"{argument} names {len(names)} bands but input {spec.name!r} has {size} channels "
            f"(shape {list(spec.shape)}).",
            hint="Give one band name per input channel, in channel order.",
        )
    order = list(spec.dim_order)
    order[axis] = "bands"
    inputs[index] = replace(spec, bands=names, dim_order=tuple(order))
    return True


def _apply_bands(
    inputs: list[InputSpec], bands: Sequence[str | Mapping[str, Any]] | Mapping[str, Sequence[Any]]
) -> tuple[list[InputSpec], tuple[Band, ...]]:
    """Band names of the first input with a channel axis, or of each input named in a mapping (multi-input)."""
    if isinstance(bands, Mapping) and not ("name" in bands and isinstance(bands.get("name"), str)):
        definitions: dict[str, Band] = {}
        for input_name, entries in bands.items():
            argument = f"bands[{input_name!r}]"
            own = _band_definitions(entries, argument)
            index = _input_named(inputs, str(input_name), "bands=")
            if not _set_bands(inputs, index, tuple(b.name for b in own), argument):
                raise ConfigurationError(f"{argument}: input {input_name!r} has no channel dimension.")
            definitions.update({b.name: b for b in own if b.name not in definitions})
        return inputs, tuple(definitions.values())
    definitions_list = _band_definitions(bands, "bands")  # type: ignore[arg-type]
    names = tuple(b.name for b in definitions_list)
    for index in range(len(inputs)):
        if _set_bands(inputs, index, names, "bands="):
            return inputs, definitions_list
    raise ConfigurationError(
        "bands= was given but no input has a channel dimension.",
        hint="Set dim_orders= so that one input has a 'channel' dimension.",
    )


def _scaling_of(entries: Any, spec: InputSpec, argument: str) -> tuple[ValueScaling, ...]:
    scaling = tuple(v if isinstance(v, ValueScaling) else ValueScaling(**dict(v)) for v in entries)
    axis = _channel_axis(spec)
    channels = spec.shape[axis] if axis is not None else -1
    if len(scaling) not in (1, channels) and channels != -1:
        raise ConfigurationError(
            f"{argument} has {len(scaling)} entries but input {spec.name!r} has {channels} channels.",
            hint="Give one entry per channel, or a single entry for all.",
        )
    return scaling


def _apply_scaling(inputs: list[InputSpec], value_scaling: Any, resize_type: str | None) -> list[InputSpec]:
    """value_scaling of the first input, or of each input named in a mapping; resize_type of the first input."""
    if isinstance(value_scaling, Mapping) and "type" not in value_scaling:
        for input_name, entries in value_scaling.items():
            index = _input_named(inputs, str(input_name), "value_scaling=")
            scaling = _scaling_of(entries, inputs[index], f"value_scaling[{input_name!r}]")
            inputs[index] = replace(inputs[index], value_scaling=scaling)
        value_scaling = None
    scaling = _scaling_of(value_scaling, inputs[0], "value_scaling") if value_scaling is not None else None
    inputs[0] = replace(
        inputs[0],
        value_scaling=scaling if scaling is not None else inputs[0].value_scaling,
        resize_type=resize_type if resize_type is not None else inputs[0].resize_type,
    )
    return inputs


def _class_axis(spec: OutputSpec) -> int | None:
    return spec.dim_order.index("class") if "class" in spec.dim_order else None


def _apply_classes(outputs: list[OutputSpec], classes: tuple[ClassInfo, ...], *, strict: bool) -> list[OutputSpec]:
    applied = False
    for index, spec in enumerate(outputs):
        if not any(t in CLASS_TASKS for t in spec.tasks):
            continue
        axis = _class_axis(spec)
        size = spec.shape[axis] if axis is not None else -1
        if size not in (-1, len(classes)):
            if strict:
                raise ConfigurationError(
                    f"classes= has {len(classes)} entries but output {spec.name!r} has {size} classes "
                    f"(shape {list(spec.shape)}).",
                    hint="Give one class per output channel.",
                )
            continue
        outputs[index] = replace(spec, classes=classes)
        applied = True
    if strict and not applied:
        raise ConfigurationError(
            "classes= was given but no output has a classification or segmentation task.",
            hint="Pass tasks=['classification'] (or a segmentation task) too.",
        )
    return outputs


def apply_overrides(
    described: ModelDescription,
    *,
    tasks: Sequence[str] | None = None,
    bands: Sequence[str | Mapping[str, Any]] | None = None,
    classes: Sequence[str | Mapping[str, Any] | ClassInfo] | None = None,
    name: str | None = None,
    description: str | None = None,
    bbox: Sequence[float] | None = None,
    geometry: Mapping[str, Any] | None = None,
    datetime: str | dt.datetime | None = None,
    start_datetime: str | dt.datetime | None = None,
    end_datetime: str | dt.datetime | None = None,
    value_scaling: Sequence[ValueScaling | Mapping[str, Any]] | str | None = None,
    resize_type: str | None = None,
    dim_orders: Mapping[str, Sequence[str]] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    pretrained: bool | None = None,
    pretrained_source: str | None = None,
    license: str | None = None,  # noqa: A002
    links: Sequence[Link] | None = None,
    none_applies: Sequence[str] | None = None,
) -> ModelDescription:
    """Apply what the caller knows on top of what was measured; infer tasks and classes when not given."""
    try:
        return _apply_overrides(**locals())
    except DescriptionError as exc:
        raise ConfigurationError(exc.message, hint=exc.hint or "Check the argument named in the message.") from exc


def _apply_overrides(described: ModelDescription, **kw: Any) -> ModelDescription:  # noqa: C901, PLR0912
    inputs = list(described.inputs)
    outputs = list(described.outputs)
    notes = list(described.notes)
    changes: dict[str, Any] = {}

    for key, order in (kw["dim_orders"] or {}).items():
        matched = False
        for seq in (inputs, outputs):
            for index, spec in enumerate(seq):
                if spec.name == key:
                    seq[index] = replace(spec, dim_order=tuple(order))
                    matched = True
        if not matched:
            names = [s.name for s in (*inputs, *outputs)]
            raise ConfigurationError(f"dim_orders names {key!r}, which is no input or output ({names}).")

    band_definitions = described.band_definitions
    if kw["bands"] is not None:
        inputs, band_definitions = _apply_bands(inputs, kw["bands"])
        changes["band_definitions"] = band_definitions

    inputs, outputs = _apply_none_applies(inputs, outputs, kw)
    if kw["value_scaling"] is not None or kw["resize_type"] is not None:
        inputs = _apply_scaling(inputs, kw["value_scaling"], kw["resize_type"])

    if kw["tasks"] is not None:
        model_tasks = tuple(kw["tasks"])
        outputs = [replace(o, tasks=tuple(t for t in o.tasks if t in model_tasks) or model_tasks) for o in outputs]
    elif described.tasks:
        model_tasks = described.tasks
        outputs = [o if o.tasks else replace(o, tasks=model_tasks) for o in outputs]
    else:
        inferred: list[str] = []
        for index, out in enumerate(outputs):
            task = out.tasks[0] if out.tasks else infer_output_task(out) or "regression"
            outputs[index] = replace(out, tasks=out.tasks or (task,))
            for t in outputs[index].tasks:
                if t not in inferred:
                    inferred.append(t)
        model_tasks = tuple(inferred)
        notes.append(f"Tasks {', '.join(model_tasks)} were inferred from the output shapes; pass tasks= to set them.")
    changes["tasks"] = model_tasks
    # An embedding model's vector is not a class dimension.
    outputs = [
        replace(o, dim_order=tuple("embedding" if d == "class" else d for d in o.dim_order))
        if "similarity-search" in o.tasks and not any(t in CLASS_TASKS for t in o.tasks)
        else o
        for o in outputs
    ]

    hyper = dict(described.hyperparameters)
    hyper.update(kw["hyperparameters"] or {})
    # Classes are written only when known (caller, weights metadata, datamodule, embedded metadata): the output
    # shape already says how many there are, and "class_0 ... class_999" would say nothing more.
    if kw["classes"] is not None:
        outputs = _apply_classes(outputs, classes_from(kw["classes"]), strict=True)
    try:
        json.dumps(hyper, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"hyperparameters are not JSON data ({exc}).",
            hint="Give numbers, strings, booleans, lists or dicts of them (e.g. str() of other objects).",
        ) from exc
    changes["hyperparameters"] = hyper

    if kw["name"] is not None:
        changes["name"] = _check_name(kw["name"])
    elif not _NAME.match(described.name):
        changes["name"] = model_name_from(described.name)
    for key in ("description", "pretrained", "pretrained_source", "license"):
        if kw[key] is not None:
            changes[key] = kw[key]
    if kw["pretrained_source"] is not None and kw["pretrained"] is None:
        changes["pretrained"] = True

    changes.update(_extent(kw))
    if kw["links"]:
        changes["links"] = (*described.links, *(_as_link(link) for link in kw["links"]))
    changes["inputs"] = tuple(inputs)
    changes["outputs"] = tuple(outputs)
    changes["notes"] = tuple(notes)
    return described.replace(**changes)


#: What the caller writes for "none applies" (an explicit ``null`` in the Item), e.g. ``resize_type="none"``.
NONE_APPLIES = "none"


def _apply_none_applies(
    inputs: list[InputSpec], outputs: list[OutputSpec], kw: dict[str, Any]
) -> tuple[list[InputSpec], list[OutputSpec]]:
    """Record the nullable fields the caller says do not apply; ``"none"`` values are consumed from ``kw``."""
    names = {str(n).removesuffix("_function") for n in (kw.get("none_applies") or ())}
    for key in ("value_scaling", "resize_type"):
        if isinstance(kw[key], str) and kw[key].lower() == NONE_APPLIES:
            names.add(key)
            kw[key] = None
    unknown = names - {"value_scaling", "resize_type", "pre_processing", "post_processing"}
    if unknown:
        raise ConfigurationError(
            f"none_applies names {sorted(unknown)}.",
            hint="Name value_scaling, resize_type, pre_processing_function or post_processing_function.",
        )
    if not names:
        return inputs, outputs
    in_names = tuple(n for n in ("value_scaling", "resize_type", "pre_processing") if n in names)
    out_names = ("post_processing",) if "post_processing" in names else ()
    inputs = [replace(i, none_applies=tuple(dict.fromkeys((*i.none_applies, *in_names)))) for i in inputs]
    outputs = [replace(o, none_applies=tuple(dict.fromkeys((*o.none_applies, *out_names)))) for o in outputs]
    return inputs, outputs


def _as_link(link: Link | Mapping[str, Any]) -> Link:
    """A :class:`Link` from a Link or a STAC link dict (``rel``, ``href``, ``type``, ``title``, extra fields)."""
    if isinstance(link, Link):
        return link
    if isinstance(link, Mapping) and isinstance(link.get("rel"), str) and isinstance(link.get("href"), str):
        extra = {k: v for k, v in link.items() if k not in ("rel", "href", "type", "title")}
        return Link(link["rel"], link["href"], link.get("type"), link.get("title"), extra)
    raise ConfigurationError(
        f"links= entry {link!r} is not a link.",
        hint="Pass mlm_export.description.Link(rel, href) objects or dicts with 'rel' and 'href'.",
    )


def _extent(kw: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    bbox = kw["bbox"]
    if bbox is not None:
        values = [float(v) for v in bbox]
        if len(values) not in (4, 6):
            raise ConfigurationError(
                f"bbox={bbox!r} must have 4 numbers: west, south, east, north.", hint="Use WGS84 degrees."
            )
        west, south, east, north = values[0], values[1], values[-2], values[-1]
        if not (-90 <= south <= 90 and -90 <= north <= 90):
            raise ConfigurationError(
                f"bbox={bbox!r}: latitudes must lie in [-90, 90].", hint="Order is west, south, east, north."
            )
        if not (-180 <= west <= 180 and -180 <= east <= 180):
            raise ConfigurationError(f"bbox={bbox!r}: longitudes must lie in [-180, 180].", hint="Use WGS84 degrees.")
        if south > north:
            raise ConfigurationError(
                f"bbox={bbox!r}: south {south} is north of north {north}.", hint="Order is west, south, east, north."
            )
        # west > east is read as a box across the antimeridian only when that box is narrower than a hemisphere.
        if west > east and not (west > 0 > east and 360 - (west - east) < 180):
            raise ConfigurationError(
                f"bbox={bbox!r}: west {west} is east of east {east} and the box does not cross the antimeridian.",
                hint="Order is west, south, east, north; across the antimeridian west > 0 > east.",
            )
        changes["bbox"] = tuple(values)
    if kw["geometry"] is not None:
        changes["geometry"] = dict(kw["geometry"])
    for key in ("datetime", "start_datetime", "end_datetime"):
        value = kw[key]
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            value = value.isoformat()
        else:
            try:
                parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError as exc:
                raise ConfigurationError(
                    f"{key}={value!r} is not an ISO 8601 date-time.", hint="Use e.g. 2024-01-31T00:00:00Z."
                ) from exc
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            value = parsed.isoformat()
        changes[key] = value
    start, end = changes.get("start_datetime"), changes.get("end_datetime")
    if (start is None) != (end is None):
        raise ConfigurationError(
            "start_datetime and end_datetime must be given together.",
            hint="Pass both, or a single datetime; for an open end use 9999-12-31T23:59:59Z.",
        )
    if start is not None and dt.datetime.fromisoformat(end) < dt.datetime.fromisoformat(start):
        raise ConfigurationError(
            f"end_datetime={end} is before start_datetime={start}.", hint="Swap them, or fix the dates."
        )
    if start is not None and "datetime" not in changes:
        changes["datetime"] = None
    return changes


__all__ = [
    "embeddable_metadata",
    "apply_overrides",
    "export_item",
    "hash_artifacts",
    "inspect_model",
    "item_from_description",
    "model_name_from",
]
