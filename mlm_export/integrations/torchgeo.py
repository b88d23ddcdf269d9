"""torchgeo hook: weights, trainers and datamodules -> override values for :func:`mlm_export.export_item`.

This module never opens, runs or measures a model: it reads metadata (``WeightsEnum.meta``, the attributes of
transform objects, a task's ``hparams``, a dataset's bands, bounds and CRS) and hands plain values to
``export_item``, whose adapter measures the model. No weights are downloaded: a ``WeightsEnum`` member is read
through ``.meta``, ``.transforms`` and ``.url`` only.

Where the overrides come from, and which wins when two sources know the same thing (the first listed wins):

* ``bands``: the dataset's ``bands`` (what was fed during training), then the weights' ``meta["bands"]``; a list
  whose length differs from the model's input channels is not used.
* ``value_scaling`` / ``resize_type`` / spatial size: the datamodule's augmentation (``predict_aug``, else ``aug``)
  and the dataset's own ``transforms``, then the weights' ``transforms``. Chained ``Normalize`` steps are folded
  into one z-score per band (``mean = m1 + m2 * s1``, ``stddev = s1 * s2``); torchgeo's usual ``Normalize(0,
  10000)`` becomes a z-score with mean 0 and stddev 10000 on every band.
* input channels: the task's ``in_channels`` (doubled for change-detection models that concatenate both dates), then
  the weights' ``in_chans``, then the number of bands; a size nobody knows is left to the adapter's probe (-1).
* tasks, classes count, loss, learning rate and the other ``hparams``: the task. Class names: the dataset's, then
  the task's ``labels`` (torchgeo >= 0.9).
* extent: the union of the train/val/test GeoDatasets' bounds, transformed to WGS84 with
  ``pyproj.Transformer.transform_bounds(..., densify_pts=21)``, and their time span.

**Pretrained weights.** torchgeo does not save the ``weights`` argument in ``hparams`` (``BaseTask.ignore``), but
every trainer that ignores it keeps it on the instance as ``task.weights`` before building its model; the
detection trainers keep a boolean in ``hparams["weights"]``. :func:`captured_weights` reads ``task.weights``, then
``task.hparams["weights"]``; the ``weights=`` argument of :func:`export_torchgeo` overrides both. A task restored
with ``load_from_checkpoint`` has lost the value (it is not in the checkpoint), so pass ``weights=`` again then.

**Dataset links.** Each split becomes a ``derived_from`` link with ``ml-aoi:split`` (``train``, ``validate``,
``test``). Its href is ``dataset_hrefs[split]`` when given (use a public URL of the STAC collection or dataset
page), otherwise a relative placeholder ``./datasets/<DatasetClass>/<split>`` so that no local path is published.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlm_export.description import Link
from mlm_export.errors import ConfigurationError
from mlm_export.integrations import hyperparameters_from, merge_export_options

# The generic transform/dataset readers live in integrations/data.py; their names stay importable from here.
from mlm_export.integrations.data import (
    TransformInfo,
    datamodule_overrides,
    dataset_bands,
    dataset_classes,
    dataset_extent,
    read_transforms,
    torchvision_preset,
    wgs84_bounds,
)

if TYPE_CHECKING:
    import pystac

#: MLM tasks of each torchgeo trainer, looked up along the class's MRO so that subclasses inherit them.
TRAINER_TASKS: dict[str, tuple[str, ...]] = {
    "ClassificationTask": ("scene-classification", "classification"),
    "MultiLabelClassificationTask": ("scene-classification", "classification"),
    "RegressionTask": ("regression",),
    "PixelwiseRegressionTask": ("regression",),
    "SemanticSegmentationTask": ("semantic-segmentation",),
    "ObjectDetectionTask": ("object-detection",),
    "InstanceSegmentationTask": ("instance-segmentation",),
    "ChangeDetectionTask": ("semantic-segmentation",),
    "MoCoTask": ("similarity-search",),
    "SimCLRTask": ("similarity-search",),
    "BYOLTask": ("similarity-search",),
    # torchgeo >= 0.9 (torchgeo.tasks.MAE, SpatioTemporalSegmentation...)
    "MAETask": ("similarity-search",),
    "SpatioTemporalSegmentationTask": ("semantic-segmentation",),
    "SpatioTemporalPixelwiseRegressionTask": ("regression",),
    "TemporalRegressionTask": ("regression",),
}
#: Trainers whose models take ``[B, T, C, ...]`` (a time axis before the channels): the sizes after ``C``.
TIME_SERIES_TRAINERS: dict[str, tuple[int, ...]] = {
    "SpatioTemporalSegmentationTask": (-1, -1),
    "SpatioTemporalPixelwiseRegressionTask": (-1, -1),
    "TemporalRegressionTask": (),
}
#: Change-detection models that take both dates as a time axis ``[B, 2, C, H, W]`` instead of stacked channels.
SIAMESE_CHANGE_MODELS = ("fcsiamdiff", "fcsiamconc", "changevit")
#: What ``weights=True`` loads in torchgeo's trainers (timm / smp / torchvision ImageNet weights).
IMAGENET = "ImageNet"
_LICENSE = re.compile(r"^[\w\-.+]+$")
_SPATIAL_KEYS = ("img_size", "image_size")


# --------------------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------------------


def _is_weights_member(value: Any) -> bool:
    return hasattr(value, "meta") and hasattr(value, "transforms") and hasattr(value, "url")


def resolve_weights(weights: Any) -> Any:
    """Return a ``WeightsEnum`` member, ``True`` (ImageNet), a local file name, or None for ``weights``.

    Accepts what torchgeo trainers accept: a member, its full name (``"ResNet18_Weights.SENTINEL2_ALL_MOCO"``),
    ``True``/``False``/``None`` or the path of a state dict. Nothing is downloaded.

    Raises:
        ConfigurationError: a string that is neither a weights name nor an existing file.
    """
    if weights is None or weights is False:
        return None
    if weights is True or _is_weights_member(weights):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        text = os.fspath(weights)
        if os.path.exists(text):
            return os.path.basename(text)
        from torchgeo.models import get_weight

        try:
            return get_weight(text)
        except (ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"weights={text!r} is neither a torchgeo weights name nor an existing file.",
                hint="Pass a WeightsEnum member, its full name such as 'ResNet18_Weights.SENTINEL2_ALL_MOCO', "
                "or the path of a state dict.",
            ) from exc
    raise ConfigurationError(
        f"weights= must be a torchgeo WeightsEnum member, a name, a path, True or None; got {type(weights).__name__}."
    )


def weights_overrides(weights: Any) -> dict[str, Any]:
    """``export_item`` overrides for pretrained ``weights``, read from ``meta`` and ``transforms`` only.

    Args:
        weights: anything :func:`resolve_weights` accepts.

    Returns:
        For a ``WeightsEnum`` member: ``bands`` (when ``meta`` has them and they match ``in_chans``),
        ``value_scaling`` (one z-score per band), ``resize_type``, ``input_shape`` ``[-1, in_chans, H, W]`` (-1
        where the transforms fix no size), ``pretrained``/``pretrained_source`` (``meta["dataset"]``),
        ``cite-as``/``code``/``via`` links (publication, repository, weights file), ``license``, ``name`` and
        ``hyperparameters``. For ``True``: ImageNet pre-training. For a file: its name as the source.

    Example:
        >>> from torchgeo.models import ResNet18_Weights
        >>> weights_overrides(ResNet18_Weights.SENTINEL2_RGB_MOCO)["pretrained_source"]
        'SSL4EO-S12'
    """
    resolved = resolve_weights(weights)
    if resolved is None:
        return {}
    if resolved is True:
        return {"pretrained": True, "pretrained_source": IMAGENET, "hyperparameters": {"weights": IMAGENET}}
    if isinstance(resolved, str):
        return {"pretrained": True, "pretrained_source": resolved, "hyperparameters": {"weights": resolved}}

    return _member_overrides(resolved)


def _member_overrides(member: Any) -> dict[str, Any]:
    """The overrides a ``WeightsEnum`` member gives (see :func:`weights_overrides`)."""
    meta: Mapping[str, Any] = dict(member.meta)
    full_name = str(member)
    info = torchvision_preset(member.transforms) or read_transforms(member.transforms)
    overrides: dict[str, Any] = {
        "pretrained": True,
        "pretrained_source": str(meta.get("dataset") or full_name),
        "hyperparameters": hyperparameters_from(
            {"weights": full_name, "ssl_method": meta.get("ssl_method"), "resolution": meta.get("resolution")}
        ),
    }
    overrides.update(_member_input(meta, info))
    model = meta.get("model") or meta.get("encoder") or meta.get("architecture")
    overrides["name"] = _model_name(f"{model}-{member.name}" if model else full_name)
    license_ = meta.get("license")
    if isinstance(license_, str) and license_:
        overrides["license"] = license_ if _LICENSE.match(license_) else "other"
    overrides["links"] = _weights_links(member, meta, full_name)
    dataset = meta.get("dataset")
    method = meta.get("ssl_method")
    source = f" pretrained on {dataset}" if dataset else ""
    overrides["description"] = f"Initialised from torchgeo weights {full_name}{source}" + (
        f" ({method})." if method else "."
    )
    return overrides


def _member_input(meta: Mapping[str, Any], info: TransformInfo) -> dict[str, Any]:
    """``bands``, ``value_scaling``, ``resize_type`` and ``input_shape`` from a member's ``meta`` and transforms."""
    in_chans = meta.get("in_chans")
    channels = int(in_chans) if isinstance(in_chans, int) else None
    if channels is None:
        channels = info.channels
    overrides: dict[str, Any] = {}
    bands = meta.get("bands")
    if isinstance(bands, (list, tuple)) and bands and (channels is None or len(bands) == channels):
        overrides["bands"] = [str(b) for b in bands]
        channels = channels or len(bands)
    scaling = info.value_scaling(channels)
    if scaling is not None:
        overrides["value_scaling"] = scaling
    if info.resize_type is not None:
        overrides["resize_type"] = info.resize_type
    size = info.size or _meta_size(meta)
    if channels is not None or size is not None:
        overrides["input_shape"] = [-1, channels or -1, *(size or (-1, -1))]
    return overrides


def _meta_size(meta: Mapping[str, Any]) -> tuple[int, int] | None:
    for key in _SPATIAL_KEYS:
        value = meta.get(key)
        if isinstance(value, int):
            return value, value
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return int(value[0]), int(value[1])
    return None


def _is_url(text: Any) -> bool:
    return isinstance(text, str) and urlparse(text).scheme in ("http", "https")


def _weights_links(weights: Any, meta: Mapping[str, Any], full_name: str) -> list[Link]:
    links = []
    if _is_url(meta.get("publication")):
        links.append(Link("cite-as", meta["publication"], "text/html", f"Publication of {full_name}"))
    if _is_url(meta.get("repo")):
        links.append(Link("code", meta["repo"], "text/html", f"Source code of {full_name}"))
    if _is_url(getattr(weights, "url", None)):
        links.append(Link("via", weights.url, "application/octet-stream", f"Pretrained weights {full_name}"))
    return links


def _model_name(text: str) -> str:
    from mlm_export.api import model_name_from

    return model_name_from(text)


# --------------------------------------------------------------------------------------------------------------
# Trainers
# --------------------------------------------------------------------------------------------------------------


def trainer_name(klass: type) -> str | None:
    """The torchgeo 0.8 name of a trainer class (``ClassificationTask``), or None for a class torchgeo did not define.

    The one place that tells the APIs apart: torchgeo <= 0.8 defines ``torchgeo.trainers.ClassificationTask``...;
    0.9+ defines ``torchgeo.tasks.Classification`` (named here ``ClassificationTask``) and keeps the old names in
    ``torchgeo.trainers`` as deprecated subclasses.
    """
    module, name = klass.__module__, klass.__name__
    if module == "torchgeo.trainers" or module.startswith("torchgeo.trainers."):
        return name
    if module == "torchgeo.tasks" or module.startswith("torchgeo.tasks."):
        return name if name.endswith("Task") else f"{name}Task"
    return None


def _torchgeo_class(obj: Any, names: Mapping[str, Any] | Sequence[str]) -> str | None:
    """The first class in ``obj``'s MRO that torchgeo defines under one of ``names`` (0.8 names), as that name."""
    for klass in type(obj).__mro__:
        name = trainer_name(klass)
        if name is not None and name in names:
            return name
    return None


def is_torchgeo_task(obj: Any) -> bool:
    """Whether ``obj`` is a torchgeo trainer (a subclass of ``BaseTask``, in ``torchgeo.trainers`` or ``.tasks``)."""
    return _torchgeo_class(obj, ("BaseTask",)) is not None


def captured_weights(task: Any) -> Any:
    """The ``weights`` a torchgeo task was built with: ``task.weights``, else ``task.hparams["weights"]``.

    torchgeo keeps the argument on the instance (it is left out of ``hparams``), so it is read from there.
    """
    weights = getattr(task, "weights", None)
    if weights is None:
        hparams = getattr(task, "hparams", None)
        if isinstance(hparams, Mapping):
            weights = hparams.get("weights")
    return weights


def task_overrides(task: Any) -> dict[str, Any]:
    """``export_item`` overrides for a torchgeo trainer, read from its class and ``hparams``.

    Returns:
        ``tasks`` (see :data:`TRAINER_TASKS`), ``input_shape`` ``[-1, in_channels, -1, -1]`` (``[-1, 2,
        in_channels, -1, -1]`` for siamese change models, ``2 * in_channels`` channels for the others, a time
        axis before the channels for :data:`TIME_SERIES_TRAINERS`),
        ``hyperparameters`` (every JSON-safe ``hparams`` value: model, backbone, loss, lr, num_classes...),
        ``name`` (model and backbone) and a ``description``.

    Raises:
        ConfigurationError: ``task`` is not a torchgeo trainer.
    """
    trainer = _torchgeo_class(task, TRAINER_TASKS)
    if trainer is None:
        if not is_torchgeo_task(task):
            raise ConfigurationError(
                f"{type(task).__qualname__} is not a torchgeo trainer.",
                hint="Pass a torchgeo task (torchgeo.tasks, or torchgeo.trainers before 0.9), or a plain nn.Module "
                "together with weights=.",
            )
        kind = type(task).__name__
        tasks: tuple[str, ...] | None = None
    else:
        kind = trainer
        tasks = TRAINER_TASKS[trainer]
    hparams: Mapping[str, Any] = dict(getattr(task, "hparams", {}) or {})
    overrides: dict[str, Any] = {"hyperparameters": hyperparameters_from(hparams)}
    if tasks:
        overrides["tasks"] = list(tasks)
    channels = hparams.get("in_channels")
    model = hparams.get("model")
    if isinstance(channels, int) and not isinstance(channels, bool):
        if kind == "ChangeDetectionTask" and model in SIAMESE_CHANGE_MODELS:
            overrides["input_shape"] = [-1, 2, channels, -1, -1]
        elif kind == "ChangeDetectionTask":
            overrides["input_shape"] = [-1, 2 * channels, -1, -1]
        elif kind in TIME_SERIES_TRAINERS:
            overrides["input_shape"] = [-1, -1, channels, *TIME_SERIES_TRAINERS[kind]]
        else:
            overrides["input_shape"] = [-1, channels, -1, -1]
    backbone = hparams.get("backbone")
    parts = [p for p in (model, backbone) if isinstance(p, str) and p]
    if parts:
        overrides["name"] = _model_name("-".join(dict.fromkeys(parts)))
    what = ", ".join(f"{k} {hparams[k]}" for k in ("model", "backbone", "loss") if isinstance(hparams.get(k), str))
    overrides["description"] = f"torchgeo {kind}" + (f" ({what})." if what else ".")
    return overrides


def _class_count(task: Any) -> int | None:
    hparams = getattr(task, "hparams", None)
    if not isinstance(hparams, Mapping):
        return None
    if hparams.get("task") == "binary":
        return None
    for key in ("num_classes", "num_labels"):
        value = hparams.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return None


def _task_labels(task: Any) -> list[str] | None:
    """The class names a task was given (``labels=``, torchgeo >= 0.9), or None."""
    hparams = getattr(task, "hparams", None)
    labels = hparams.get("labels") if isinstance(hparams, Mapping) else None
    if isinstance(labels, (list, tuple)) and labels and all(isinstance(label, str) for label in labels):
        return list(labels)
    return None


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def _resize_type(from_data: Mapping[str, Any], from_weights: Mapping[str, Any], has_data: bool) -> str | None:
    """The resize the model's inputs get: the datamodule's pipeline (what training fed) wins over pretraining's."""
    data, weights = from_data.get("resize_type"), from_weights.get("resize_type")
    if not has_data:
        return weights
    if weights is not None and weights != data:
        warnings.warn(
            f"resize_type: the pretraining weights' transforms say {weights!r}, the datamodule's pipeline says "
            f"{data!r}; the datamodule's (what the model was trained with) is used.",
            UserWarning,
            stacklevel=4,
        )
    return data


def _merge_shapes(shapes: Sequence[Sequence[int]]) -> list[int] | None:
    """Element-wise first known (not -1) size among shapes of the same rank as the first, by precedence."""
    if not shapes:
        return None
    rank = len(shapes[0])
    merged = [-1] * rank
    for shape in shapes:
        if len(shape) != rank:
            continue
        merged = [m if m != -1 else int(s) for m, s in zip(merged, shape, strict=True)]
    return merged


def _channel_axis(shape: Sequence[int]) -> int:
    """``[B, C, H, W]`` images: 1; ``[B, T, C, H, W]`` and ``[B, T, C]`` time series: 2."""
    return 1 if len(shape) == 4 else 2


def _first_fitting(candidates: Sequence[Sequence[Any] | None], channels: int, *, allow_one: bool = True) -> Any:
    """The first candidate with one entry per channel (or a single entry when ``allow_one``); warn when none fits."""
    given = [c for c in candidates if c]
    for candidate in given:
        if channels == -1 or len(candidate) == channels or (allow_one and len(candidate) == 1):
            return list(candidate)
    if given:
        warnings.warn(
            f"{len(given[0])} band names/scalings from the datamodule or weights do not match the model's "
            f"{channels} input channels; they are left out.",
            stacklevel=4,
        )
    return None


def torchgeo_overrides(
    task_or_model: Any = None,
    *,
    datamodule: Any = None,
    weights: Any = None,
    dataset_hrefs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every ``export_item`` override torchgeo objects give, merged (see the module docstring for precedence).

    Args:
        task_or_model: a torchgeo trainer, or any other model (only ``weights`` and ``datamodule`` then speak).
        datamodule: a datamodule after ``setup`` or a dataset.
        weights: pretrained weights; defaults to those captured from the task (:func:`captured_weights`).
        dataset_hrefs: public href per split for the ``derived_from`` links.

    Raises:
        ConfigurationError: the weights' ``in_chans`` differ from the task's ``in_channels``.
    """
    task = task_or_model if task_or_model is not None and is_torchgeo_task(task_or_model) else None
    weights, from_weights = _weights_layer(task, weights)
    from_task = task_overrides(task) if task is not None else {}
    from_data = datamodule_overrides(datamodule, dataset_hrefs=dataset_hrefs) if datamodule is not None else {}
    _check_channels(from_task.get("input_shape"), from_weights.get("input_shape"), weights)

    merged = merge_export_options(
        {k: v for k, v in from_weights.items() if k not in ("input_shape", "description")},
        {k: v for k, v in from_task.items() if k not in ("input_shape", "description")},
        {k: v for k, v in from_data.items() if k not in ("input_shape", "description", "classes")},
    )
    for key in ("bands", "value_scaling", "resize_type"):
        merged.pop(key, None)
    merged.update(_input_overrides(task, from_task, from_weights, from_data, has_data=datamodule is not None))

    count = _class_count(task) if task is not None else None
    names = from_data.get("classes") or (_task_labels(task) if task is not None else None)
    if count is not None and names and len(names) == count:
        merged["classes"] = names
    texts = [layer.get("description") for layer in (from_task, from_weights, from_data)]
    text = " ".join(t for t in texts if t)
    if text:
        merged["description"] = text
    return merged


def _weights_layer(task: Any, weights: Any) -> tuple[Any, dict[str, Any]]:
    """The weights in effect (given, else those ``task`` was built with) and the overrides they give.

    Weights the task was not built from give their bands and transforms but no ``mlm:pretrained`` (with a warning);
    a task built from scratch gives ``pretrained: False``.
    """
    built_with = captured_weights(task) if task is not None else None
    if weights is None and task is not None:
        weights = built_with
    from_weights = weights_overrides(weights) if weights is not None else {}
    if task is not None and weights is not None and built_with in (None, False) and from_weights.get("pretrained"):
        warnings.warn(
            f"weights={weights} describe pretraining, but the task was built with weights={built_with}: "
            "mlm:pretrained is left unset (only the weights' bands and transforms are used).",
            UserWarning,
            stacklevel=3,
        )
        from_weights = {k: v for k, v in from_weights.items() if k not in ("pretrained", "pretrained_source")}
    if task is not None and not from_weights:
        from_weights = {"pretrained": False}  # built from scratch: MLM wants pretrained false, source null
    return weights, from_weights


def _check_channels(task_shape: Sequence[int] | None, weights_shape: Sequence[int] | None, weights: Any) -> None:
    """Raise when the task's and the weights' input shapes name different channel counts.

    Raises:
        ConfigurationError: the weights' ``in_chans`` differ from the task's ``in_channels``.
    """
    if not (task_shape and weights_shape and len(task_shape) == len(weights_shape)):
        return
    axis = _channel_axis(task_shape)
    if -1 not in (task_shape[axis], weights_shape[axis]) and task_shape[axis] != weights_shape[axis]:
        raise ConfigurationError(
            f"weights {weights} expect {weights_shape[axis]} input channels but the task has "
            f"in_channels={task_shape[axis]}.",
            hint="Build the task with the weights' in_chans, or pass the weights it was really built with.",
        )


def _input_overrides(
    task: Any,
    from_task: Mapping[str, Any],
    from_weights: Mapping[str, Any],
    from_data: Mapping[str, Any],
    *,
    has_data: bool,
) -> dict[str, Any]:
    """``bands``, ``value_scaling``, ``resize_type`` and ``input_shape``, merged by precedence.

    Bands and scalings are fitted to the model's channels; change models that stack both dates on the channel axis
    see every band twice.
    """
    shapes = (from_task.get("input_shape"), from_data.get("input_shape"), from_weights.get("input_shape"))
    shape = _merge_shapes([s for s in shapes if s])
    channels = shape[_channel_axis(shape)] if shape else -1
    stacked = bool(task is not None and shape and len(shape) == 4 and _torchgeo_class(task, ("ChangeDetectionTask",)))
    repeats = 2 if stacked else 1
    per_date = channels // repeats if channels != -1 and channels % repeats == 0 else -1
    result: dict[str, Any] = {}
    bands = _first_fitting([from_data.get("bands"), from_weights.get("bands")], per_date, allow_one=False)
    scaling = _first_fitting([from_data.get("value_scaling"), from_weights.get("value_scaling")], per_date)
    if bands is not None:
        result["bands"] = [f"{b}_t{i}" for i in (1, 2) for b in bands] if stacked else bands
    if scaling is not None:
        if len(scaling) == 1 and per_date != -1:
            scaling = scaling * per_date
        result["value_scaling"] = scaling * repeats
    resize = _resize_type(from_data, from_weights, has_data)
    if resize is not None:
        result["resize_type"] = resize
    if shape is not None:
        result["input_shape"] = shape
    return result


def export_torchgeo(
    task_or_model: Any,
    *,
    datamodule: Any = None,
    weights: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    dataset_hrefs: Mapping[str, str] | None = None,
    **export_options: Any,
) -> pystac.Item:
    """Export a torchgeo trainer (or an ``nn.Module`` with torchgeo weights) as an MLM STAC Item.

    Gathers bands, value scaling, input size, tasks, classes, hyperparameters, pretrained source, extent and
    dataset links from the task, its weights and the datamodule (:func:`torchgeo_overrides`), then calls
    :func:`mlm_export.export_item`, which measures the model. Anything in ``export_options`` wins.

    Args:
        task_or_model: a torchgeo task (``torchgeo.tasks``; ``torchgeo.trainers`` before 0.9), or a plain
            ``nn.Module`` (then pass ``weights=``).
        datamodule: the datamodule it was trained with (after ``setup('fit')``), or a dataset.
        weights: pretrained weights (a ``WeightsEnum`` member or name, ``True``, a path); defaults to the weights
            the task was built with.
        checkpoint: a Lightning checkpoint of this task to publish as the model artifact instead of writing the
            in-memory weights (``model_class`` defaults to the task's class).
        dataset_hrefs: public href per split (``train``, ``validate``, ``test``) for the ``derived_from`` links;
            a relative placeholder is used otherwise.
        **export_options: any :func:`mlm_export.export_item` argument (``artifact_dir``, ``name``, ``bbox``...).

    Returns:
        The validated Item.

    Raises:
        ConfigurationError: inconsistent weights and task, or a bad option.
        MLMExportError: what ``export_item`` raises.

    Example:
        >>> from torchgeo.tasks import SemanticSegmentation  # torchgeo < 0.9: trainers.SemanticSegmentationTask
        >>> task = SemanticSegmentation(backbone="resnet18", in_channels=4, num_classes=3)
        >>> item = export_torchgeo(task, datamodule=datamodule, artifact_dir="out")  # doctest: +SKIP
        >>> mlm_export.save_item(item, "out/item.json")  # doctest: +SKIP

    .. versionadded:: 0.1
    """
    from mlm_export.api import export_item

    overrides = torchgeo_overrides(task_or_model, datamodule=datamodule, weights=weights, dataset_hrefs=dataset_hrefs)
    if "input_shape" not in export_options and "example_input" not in export_options:
        _shape_as_example(overrides)
    options = merge_export_options(overrides, export_options)
    source: Any = task_or_model
    if checkpoint is not None:
        source = os.fspath(checkpoint)
        options.setdefault("model_class", type(task_or_model))
    item = export_item(source, **options)
    wrapped = getattr(task_or_model, "model", None) if is_torchgeo_task(task_or_model) else None
    if wrapped is not None and hasattr(wrapped, "forward"):
        # mlm:architecture names the network the trainer wraps (Unet, ResNet...), not the trainer class.
        item.properties["mlm:architecture"] = type(wrapped).__name__
    return item


def _shape_as_example(overrides: dict[str, Any]) -> None:
    """Sizes the datamodule or weights fed the model become the dry-run's example, not fixed dimensions.

    A size seen in training (64 x 64 patches, a 224 crop) is where measuring starts; probing then decides whether
    the model takes other sizes (measurement wins over the batches seen).
    """
    import torch

    shape = overrides.get("input_shape")
    if not shape or -1 in shape[1:] or len(shape) not in (4, 5):
        return
    del overrides["input_shape"]
    overrides["example_input"] = torch.zeros([1 if s == -1 else s for s in shape])


__all__ = [
    "TIME_SERIES_TRAINERS", "TRAINER_TASKS", "TransformInfo", "captured_weights", "datamodule_overrides",
    "dataset_bands", "dataset_classes", "dataset_extent", "export_torchgeo", "is_torchgeo_task", "read_transforms",
    "resolve_weights", "task_overrides", "torchgeo_overrides", "torchvision_preset", "trainer_name",
    "weights_overrides", "wgs84_bounds",
]  # fmt: skip
