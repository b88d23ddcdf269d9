"""Turn a :class:`~mlm_export.description.ModelDescription` into a ``pystac.Item`` that declares MLM v1.5.2.

Band definitions use STAC 1.1 common ``bands`` (in Item properties and on the ``mlm:model`` asset): pystac 1.15
writes STAC 1.1.0 Items, STAC 1.1 ``bands`` replace ``eo:bands``/``raster:bands``, they satisfy MLM's band
cross-reference check without another extension, and eo v2 / raster v2 (the 1.1-era extensions) do not satisfy it.
A band the sensor table (:mod:`mlm_export.stac.bands`) names without doubt gets ``eo:common_name`` there (declaring eo
v2.0.0), never in ``mlm:input[].bands`` (MLM allows no other key there).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pystac
from pystac.extensions import mlm as mlm_props
from pystac.extensions.file import FileExtension
from pystac.utils import str_to_datetime

from mlm_export.description import (
    INPUT_NULLABLE,
    OUTPUT_NULLABLE,
    Artifact,
    ClassInfo,
    InputSpec,
    ModelDescription,
    OutputSpec,
    hyperparameter_key,
)
from mlm_export.errors import DescriptionError
from mlm_export.provenance.software import apply_software
from mlm_export.stac.bands import common_names

if TYPE_CHECKING:
    from mlm_export.provenance.item import Provenance

logger = logging.getLogger(__name__)

#: The MLM version every item declares; change it here to move to a later spec.
MLM_VERSION = "1.5.2"
MLM_SCHEMA_URI = f"https://stac-extensions.github.io/mlm/v{MLM_VERSION}/schema.json"
FILE_SCHEMA_URI = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
CLASSIFICATION_SCHEMA_URI = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
ML_AOI_SCHEMA_URI = "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json"
EO_SCHEMA_URI = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"

#: Used when neither the caller nor the description gives a spatial extent.
WHOLE_GLOBE_BBOX = (-180.0, -90.0, 180.0, 90.0)

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def to_semver(version: str) -> str:
    """Return ``version`` as strict semver: ``2.14.1+cu130`` stays, ``2.1`` -> ``2.1.0``, ``2.5.0a0`` -> ``2.5.0-a0``.

    A PEP 440 version is read by ``packaging.version``; its pre-, post- and dev-release parts become the semver
    pre-release and its local part the build metadata. Other text keeps its leading ``X[.Y[.Z]]``.

    Raises:
        DescriptionError: no ``X[.Y[.Z]]`` can be found in ``version``.
    """
    from packaging.version import InvalidVersion, Version

    if _SEMVER.match(version):
        return version
    try:
        parsed = Version(version)
    except InvalidVersion:
        match = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", version.strip())
        if not match:
            raise DescriptionError(f"framework_version {version!r} is not a version number.") from None
        return ".".join(str(int(part or 0)) for part in match.groups())
    major, minor, patch = (*parsed.release, 0, 0)[:3]
    pre = [f"{parsed.pre[0]}{parsed.pre[1]}"] if parsed.pre else []
    pre += [f"post{parsed.post}"] if parsed.post is not None else []
    pre += [f"dev{parsed.dev}"] if parsed.dev is not None else []
    candidate = f"{major}.{minor}.{patch}" + (f"-{'.'.join(pre)}" if pre else "")
    candidate += f"+{parsed.local}" if parsed.local else ""
    return candidate if _SEMVER.match(candidate) else f"{major}.{minor}.{patch}"


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _classes_json(classes: tuple[ClassInfo, ...]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in classes]


def _expressions_json(expressions: tuple[Mapping[str, Any], ...] | None) -> Any:
    if expressions is None:
        return None
    items = [dict(e) for e in expressions]
    return items[0] if len(items) == 1 else items


def _nullable(result: dict[str, Any], key: str, value: Any, spec: InputSpec | OutputSpec, field_name: str) -> None:
    """Write ``value``; an explicit null only when the caller said none applies; otherwise leave the field out."""
    if value is not None:
        result[key] = value
    elif field_name in spec.none_applies:
        result[key] = None


def input_json(spec: InputSpec) -> dict[str, Any]:
    """Return one ``mlm:input`` object.

    ``value_scaling``, ``resize_type`` and ``pre_processing_function`` are written when known, ``null`` when the
    caller said none applies (``spec.none_applies``), and left out when unknown (see :func:`unknown_fields`).
    """
    result: dict[str, Any] = {
        mlm_props.NAME_INPUT_OBJECT_PROP: spec.name,
        mlm_props.BANDS_INPUT_OBJECT_PROP: list(spec.bands),
        mlm_props.INPUT_INPUT_OBJECT_PROP: {
            mlm_props.SHAPE_INPUT_STRUCTURE_PROP: list(spec.shape),
            mlm_props.DIM_ORDER_INPUT_STRUCTURE_PROP: list(spec.dim_order),
            mlm_props.DATA_TYPE_INPUT_STRUCTURE_PROP: spec.data_type,
        },
    }
    scaling = None if spec.value_scaling is None else [v.to_dict() for v in spec.value_scaling]
    _nullable(result, mlm_props.VALUE_SCALING_INPUT_OBJECT_PROP, scaling, spec, "value_scaling")
    _nullable(result, mlm_props.RESIZE_TYPE_INPUT_OBJECT_PROP, spec.resize_type, spec, "resize_type")
    pre = _expressions_json(spec.pre_processing)
    _nullable(result, mlm_props.PRE_PROCESSING_FUNCTION_INPUT_OBJECT_PROP, pre, spec, "pre_processing")
    if spec.description:
        result[mlm_props.DESCRIPTION_INPUT_OBJECT_PROP] = spec.description
    return result


def output_json(spec: OutputSpec, model_tasks: tuple[str, ...]) -> dict[str, Any]:
    """Return one ``mlm:output`` object (``post_processing_function`` as for inputs: known, null or omitted)."""
    result: dict[str, Any] = {
        mlm_props.NAME_RESULT_PROP: spec.name,
        # An embedding output's tasks are its own, [] included (overrides.py): never the model's class task.
        mlm_props.TASKS_RESULT_PROP: list(spec.tasks or ([] if "embedding" in spec.dim_order else model_tasks)),
        mlm_props.RESULT_RESULT_PROP: {
            mlm_props.SHAPE_RESULT_STRUCTURE_PROP: list(spec.shape),
            mlm_props.DIM_ORDER_RESULT_STRUCTURE_PROP: list(spec.dim_order),
            mlm_props.DATA_TYPE_RESULT_STRUCTURE_PROP: spec.data_type,
        },
    }
    post = _expressions_json(spec.post_processing)
    _nullable(result, mlm_props.POST_PROCESSING_FUNCTION_RESULT_PROP, post, spec, "post_processing")
    if spec.description:
        result[mlm_props.DESCRIPTION_RESULT_PROP] = spec.description
    if spec.bands:
        result["bands"] = list(spec.bands)
    if spec.classes:
        result[mlm_props.CLASSES_RESULT_PROP] = _classes_json(spec.classes)
    return result


#: The Item field each nullable spec field is written as.
_NULLABLE_FIELDS = {
    "value_scaling": "value_scaling",
    "resize_type": "resize_type",
    "pre_processing": "pre_processing_function",
    "post_processing": "post_processing_function",
}


def unknown_fields(description: ModelDescription) -> list[str]:
    """The nullable MLM fields nobody stated (left out of the Item), as ``input 'x' value_scaling`` strings."""
    missing = []
    for kind, specs in (("input", description.inputs), ("output", description.outputs)):
        for spec in specs:
            for field_name in INPUT_NULLABLE if kind == "input" else OUTPUT_NULLABLE:
                if getattr(spec, field_name) is None and field_name not in spec.none_applies:
                    missing.append(f"{kind} {spec.name!r} {_NULLABLE_FIELDS[field_name]}")
    return missing


def _warn_unknown(description: ModelDescription) -> None:
    """One warning for every nullable field left out: MLM reads an omitted one as null ("none applies")."""
    missing = unknown_fields(description)
    if missing:
        logger.warning(
            "%r: %s unknown and left out; readers take an omitted field as null (no scaling/resizing/processing). %s",
            description.name,
            ", ".join(missing),
            _how_to_state(missing),
        )


def _how_to_state(missing: list[str]) -> str:
    """What to pass for the fields left out, naming only those (value_scaling=, resize_type=, none_applies=)."""
    named = [name for name in ("value_scaling", "resize_type") if any(m.endswith(f" {name}") for m in missing)]
    processing = any(m.endswith("processing_function") for m in missing)
    steps = []
    if named:
        steps.append(f"{' / '.join(f'{name}=' for name in named)} (or 'none' when none applies)")
    if processing:
        steps.append("none_applies= naming the processing functions when none applies")
    return f"Pass {', and '.join(steps)}."


def _without_nulls(value: Any) -> Any:
    """``value`` with ``None`` entries of every mapping removed (no nulls inside ``mlm:hyperparameters``)."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_nulls(v) for v in value]
    return value


_ID_CHARACTERS = re.compile(r"[^a-z0-9_-]+")


def default_item_id(description: ModelDescription, *, with_digest: bool = False) -> str:
    """A searchable Item id: the lowercase name slug (stac-check: lowercase letters, digits, ``_`` and ``-``).

    With ``with_digest`` (what ``export_item`` uses), the first 8 hex digits of the model file's sha2-256 follow, so
    that two models with the same generic name ("net") stay apart in one catalog.
    """
    base = _ID_CHARACTERS.sub("-", description.name.lower()).strip("-_") or "model"
    digest = next((a.file_checksum for a in description.artifacts if a.is_model and a.file_checksum), None)
    if not with_digest:
        return base
    if digest and len(digest) > 12 and digest.startswith("1220") and set(digest[4:]) != {"0"}:
        suffix = digest[4:12]
        if not base.endswith(suffix):
            base = f"{base}-{suffix}"
    return base


def versioned_item_id(item_id: str, version: str | None) -> str:
    """``item_id`` with the Item's ``version`` appended (``net-10bd8f1f`` + ``1.1.0`` -> ``net-10bd8f1f-v1_1_0``).

    Two revisions of one model (the same weights included) then get different ids and can share a collection. The
    version is written with the id's characters (lowercase letters, digits, ``_`` and ``-``): every other run of
    characters becomes ``_``, and a ``v`` is put in front unless the version starts with one.
    """
    if not version:
        return item_id
    slug = _ID_CHARACTERS.sub("_", version.strip().lower()).strip("_-")
    if not slug:
        return item_id
    slug = slug if slug.startswith("v") else f"v{slug}"
    return item_id if item_id.endswith(f"-{slug}") else f"{item_id}-{slug}"


def architecture_name(architecture: str) -> str:
    """An architecture *name* for ``mlm:architecture``: ``__main__.Seg`` -> ``Seg``, ``pkg.mod.ResNet`` -> ``ResNet``.

    The Python path is provenance, not an architecture; it is kept elsewhere (``mlm:hyperparameters.model_class``
    or a source-code asset's ``mlm:entrypoint``).
    """
    if ":" in architecture:
        architecture = architecture.rsplit(":", 1)[-1]
    if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_<>][\w<>]*)+", architecture):
        return architecture.rsplit(".", 1)[-1]
    return architecture


def _parse_datetime(value: str | dt.datetime | None, argument: str) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return str_to_datetime(value)
    except (ValueError, TypeError) as exc:
        raise DescriptionError(
            f"{argument} {value!r} is not an ISO 8601 date-time (e.g. 2024-01-31T00:00:00Z)."
        ) from exc


def _geometry_for(bbox: tuple[float, ...]) -> dict[str, Any]:
    west, south, east, north = bbox[0], bbox[1], bbox[-2], bbox[-1]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _asset(artifact: Artifact, band_objects: list[dict[str, Any]] | None) -> pystac.Asset:
    asset = pystac.Asset(
        href=artifact.href or str(Path(artifact.path).resolve()),
        title=artifact.title,
        description=artifact.description,
        media_type=artifact.media_type,
        roles=list(artifact.roles),
    )
    if artifact.is_model:
        asset.extra_fields[mlm_props.ARTIFACT_TYPE_ASSET_PROP] = artifact.artifact_type
        if artifact.compile_method:
            asset.extra_fields[mlm_props.COMPILE_METHOD_ASSET_PROP] = artifact.compile_method
        if band_objects:
            asset.extra_fields["bands"] = band_objects
    if artifact.file_size is not None or artifact.file_checksum is not None:
        file_ext = FileExtension.ext(asset, add_if_missing=False)
        file_ext.size = artifact.file_size
        file_ext.checksum = artifact.file_checksum
    return asset


#: Where a local catalog (``mlm-export catalog``) keeps the Collection, relative to an Item in it.
LOCAL_COLLECTION_HREF = "../collection.json"


def build_item(
    description: ModelDescription,
    *,
    item_id: str | None = None,
    collection: str | None = None,
    provenance: Provenance | None = None,
    collection_href: str | None = None,
) -> pystac.Item:
    """Build the STAC Item for ``description``.

    Notes of the description are not Item content: ``properties.description`` is the publisher's text only.

    Args:
        description: the model description (measured and overridden values).
        item_id: the Item id; defaults to :func:`default_item_id`.
        collection: id of the collection the item belongs to (written as the ``collection`` field, with the
            ``collection`` link STAC requires alongside it).
        collection_href: the Collection's href for that link (default ``../collection.json``, the local catalog
            layout; the API's collection URL when publishing).
        provenance: source-code and container assets, revision and scientific references
            (:func:`mlm_export.provenance.item.provenance_from`).

    Raises:
        DescriptionError: the description lacks what an item needs (e.g. an ``mlm:model`` artifact).
    """
    if not any(a.is_model for a in description.artifacts):
        raise DescriptionError(
            f"model {description.name!r} has no artifact with role 'mlm:model'.",
            hint="Export weights (artifact_dir=...) or pass a model file so there is something to publish.",
        )
    bbox, geometry = _spatial_extent(description)
    when, start, end = _temporal_extent(description)
    item = pystac.Item(
        id=item_id or default_item_id(description),
        geometry=geometry,
        bbox=list(bbox),
        datetime=when,
        start_datetime=start,
        end_datetime=end,
        properties={},
        collection=collection,
    )
    item.properties.update(_item_properties(description))
    band_objects = item.properties.get("bands")
    for artifact in description.artifacts:
        item.add_asset(artifact.key, _asset(artifact, band_objects if artifact.is_model else None))
    _add_links(item, description, collection, collection_href)
    item.stac_extensions = _extensions_used(description)
    # Provenance: processing:software (mlm-export and the framework that measured), then the caller's provenance.
    apply_software(item, description.framework)
    if provenance is not None:
        provenance.apply(item)
    _warn_unknown(description)
    return item


def _add_links(
    item: pystac.Item, description: ModelDescription, collection: str | None, collection_href: str | None
) -> None:
    """Add the ``collection`` link (when the Item belongs to one and names none), then the description's own links.

    ``../collection.json`` (the catalog layout) is where :func:`mlm_export.save_item` looks for the Collection; a
    ``collection`` link among the description's links (a URL, a file) is used instead.
    """
    if collection is not None and not any(link.rel == "collection" for link in description.links):
        item.add_link(pystac.Link("collection", collection_href or LOCAL_COLLECTION_HREF, pystac.MediaType.JSON))
    for link in description.links:
        stac_link = pystac.Link(
            rel=link.rel, target=link.href, media_type=link.media_type, title=link.title, extra_fields=dict(link.extra)
        )
        item.add_link(stac_link)


def _spatial_extent(description: ModelDescription) -> tuple[tuple[float, ...], dict[str, Any]]:
    """The Item's ``bbox`` and ``geometry``: each derived from the other when one is given, else the whole globe."""
    bbox = description.bbox
    geometry = dict(description.geometry) if description.geometry is not None else None
    if bbox is None and geometry is None:
        logger.warning("No spatial extent given for %r: using the whole globe.", description.name)
        bbox = WHOLE_GLOBE_BBOX
    if geometry is None:
        geometry = _geometry_for(bbox)  # type: ignore[arg-type]
    if bbox is None:
        from shapely.geometry import shape

        bbox = tuple(shape(geometry).bounds)
    return bbox, geometry


def _temporal_extent(
    description: ModelDescription,
) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]:
    """The Item's ``datetime``, ``start_datetime`` and ``end_datetime`` (the export time when none is given).

    Raises:
        DescriptionError: a value is not ISO 8601, only one end of the range is given, or the range is reversed.
    """
    start = _parse_datetime(description.start_datetime, "start_datetime")
    end = _parse_datetime(description.end_datetime, "end_datetime")
    when = _parse_datetime(description.datetime, "datetime")
    if (start is None) != (end is None):
        raise DescriptionError("start_datetime and end_datetime must be given together.")
    if start is not None and end is not None and end < start:
        raise DescriptionError(f"end_datetime {end.isoformat()} is before start_datetime {start.isoformat()}.")
    if when is None and start is None:
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        logger.warning(
            "No datetime given for %r: using the export time %s. Pass datetime= or start_datetime= and "
            "end_datetime= for the model's temporal domain.",
            description.name,
            when.isoformat(),
        )
    return when, start, end


def _item_properties(description: ModelDescription) -> dict[str, Any]:
    """The Item properties besides the datetimes: description, license, common ``bands`` and the ``mlm:*`` fields."""
    props: dict[str, Any] = {}
    if description.description:
        props["description"] = description.description
    if description.license:
        props["license"] = description.license
    band_objects = _band_objects(description)
    if band_objects:
        props["bands"] = band_objects
    props.update(_drop_none(_mlm_model_fields(description)))
    if description.pretrained is not None:
        # MLM README: an explicit null source when the model was trained from scratch.
        props[mlm_props.PRETRAINED_SOURCE_PROP] = description.pretrained_source
    props[mlm_props.INPUT_PROP] = [input_json(i) for i in description.inputs]
    props[mlm_props.OUTPUT_PROP] = [output_json(o, description.tasks) for o in description.outputs]
    return props


def _band_objects(description: ModelDescription) -> list[dict[str, Any]]:
    """The STAC 1.1 ``bands`` objects, with ``eo:common_name`` where the sensor table gives one."""
    band_objects = [b.to_dict() for b in description.band_definitions]
    common = common_names([b["name"] for b in band_objects])
    for band in band_objects:
        if band["name"] in common and "eo:common_name" not in band:
            band["eo:common_name"] = common[band["name"]]
    return band_objects


def _mlm_model_fields(description: ModelDescription) -> dict[str, Any]:
    """The model-level ``mlm:*`` properties, ``None`` where unknown (dropped by the caller)."""
    hyperparameters = {
        hyperparameter_key(k): _without_nulls(v) for k, v in description.hyperparameters.items() if v is not None
    }
    version = description.framework_version
    return {
        mlm_props.NAME_PROP: description.name,
        mlm_props.ARCHITECTURE_PROP: architecture_name(description.architecture),
        mlm_props.TASKS_PROP: list(description.tasks),
        mlm_props.FRAMEWORK_PROP: description.framework,
        mlm_props.FRAMEWORK_VERSION_PROP: to_semver(version) if version else None,
        mlm_props.MEMORY_SIZE_PROP: description.memory_size,
        mlm_props.TOTAL_PARAMETERS_PROP: description.total_parameters,
        mlm_props.PRETRAINED_PROP: description.pretrained,
        mlm_props.BATCH_SIZE_SUGGESTION_PROP: description.batch_size_suggestion,
        mlm_props.ACCELERATOR_PROP: description.accelerator,
        mlm_props.ACCELERATOR_CONSTRAINED_PROP: description.accelerator_constrained,
        mlm_props.ACCELERATOR_SUMMARY_PROP: description.accelerator_summary,
        mlm_props.ACCELERATOR_COUNT_PROP: description.accelerator_count,
        mlm_props.HYPERPARAMETERS_PROP: hyperparameters or None,
    }


def _extensions_used(description: ModelDescription) -> list[str]:
    """The schema URIs the Item declares: MLM, then file, classification, ml-aoi and eo where their fields appear."""
    extensions = [MLM_SCHEMA_URI]
    if any(a.file_size is not None or a.file_checksum is not None for a in description.artifacts):
        extensions.append(FILE_SCHEMA_URI)
    if any(o.classes for o in description.outputs):
        extensions.append(CLASSIFICATION_SCHEMA_URI)
    if any(k.startswith("ml-aoi:") for link in description.links for k in link.extra):
        extensions.append(ML_AOI_SCHEMA_URI)
    if common_names([b.name for b in description.band_definitions]):
        extensions.append(EO_SCHEMA_URI)
    return extensions
