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
* tasks, classes count, loss, learning rate and the other ``hparams``: the task.
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

import datetime as dt
import functools
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from mlm_export.description import Link, ValueScaling
from mlm_export.errors import ConfigurationError
from mlm_export.integrations import hyperparameters_from, merge_export_options

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
}
#: Change-detection models that take both dates as a time axis ``[B, 2, C, H, W]`` instead of stacked channels.
SIAMESE_CHANGE_MODELS = ("fcsiamdiff", "fcsiamconc", "changevit")
#: Datamodule attribute -> ``ml-aoi:split`` value.
SPLITS: dict[str, str] = {"train_dataset": "train", "val_dataset": "validate", "test_dataset": "test"}
#: Interpolation names (torchvision ``InterpolationMode``, kornia ``Resample``) -> MLM ``resize_type``.
RESIZE_TYPES: dict[str, str] = {
    "nearest": "interpolation-nearest",
    "nearest_exact": "interpolation-nearest",
    "bilinear": "interpolation-linear",
    "linear": "interpolation-linear",
    "bicubic": "interpolation-cubic",
    "cubic": "interpolation-cubic",
    "lanczos": "interpolation-lanczos4",
    "box": "interpolation-area",
    "area": "interpolation-area",
}
#: What ``weights=True`` loads in torchgeo's trainers (timm / smp / torchvision ImageNet weights).
IMAGENET = "ImageNet"
_LICENSE = re.compile(r"^[\w\-.+]+$")
_SPATIAL_KEYS = ("img_size", "image_size")


# --------------------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformInfo:
    """What a chain of transforms does to a model input, read from the transform objects' attributes.

    ``mean``/``std`` fold every ``Normalize`` step into one ``(x - mean) / std`` per channel (a single value
    applies to all channels); ``size`` is the fixed ``(height, width)`` the chain produces, when it fixes one.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize_type: str | None = None
    size: tuple[int, int] | None = None

    @property
    def channels(self) -> int | None:
        """Number of channels the normalisation names (None when it broadcasts one value)."""
        if self.mean is None or self.std is None:
            return None
        count = max(len(self.mean), len(self.std))
        return None if count == 1 else count

    def value_scaling(self, channels: int | None = None) -> list[ValueScaling] | None:
        """One z-score entry per channel (``channels`` of them when the chain gives one value for all).

        Returns None when the chain does not normalise, or normalises with mean 0 and stddev 1 only.

        Raises:
            ConfigurationError: the chain normalises a different number of channels than ``channels``.
        """
        if self.mean is None or self.std is None:
            return None
        if all(m == 0 for m in self.mean) and all(s == 1 for s in self.std):
            return None
        count = self.channels
        if count is not None and channels is not None and count != channels:
            raise ConfigurationError(
                f"The transforms normalise {count} channels but the model input has {channels}.",
                hint="Pass value_scaling= yourself, or transforms that match the model's input channels.",
            )
        size = channels or count or 1
        means = _broadcast(self.mean, size)
        stds = _broadcast(self.std, size)
        return [ValueScaling("z-score", mean=m, stddev=s) for m, s in zip(means, stds, strict=True)]


def _broadcast(values: tuple[float, ...], size: int) -> tuple[float, ...]:
    return values * size if len(values) == 1 else values


def _floats(value: Any) -> tuple[float, ...]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        flat: list[float] = []
        for item in value:
            flat.extend(_floats(item))
        return tuple(flat)
    return (float(value),)


def _pair(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if hasattr(size, "tolist"):
        size = size.tolist()
    if isinstance(size, int):
        return None  # resizes the shorter side only: the other side depends on the image
    values = [int(s) for s in size]
    if len(values) == 2:
        return values[0], values[1]
    return None


def _square(size: Any) -> tuple[int, int] | None:
    if isinstance(size, int):
        return size, size
    values = [int(s) for s in (size.tolist() if hasattr(size, "tolist") else size)]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _steps(transforms: Any) -> Iterator[Any]:
    """Every transform in ``transforms``, containers opened.

    torchvision ``Compose`` (v1 and v2), ``nn.Sequential`` and the kornia containers (``AugmentationSequential``,
    ``ImageSequential``, ``VideoSequential``, all ``nn.Sequential`` subclasses) are opened recursively.
    """
    if transforms is None:
        return
    if isinstance(transforms, (list, tuple)):
        for item in transforms:
            yield from _steps(item)
        return
    import torch.nn as nn

    inner = getattr(transforms, "transforms", None)
    if type(transforms).__name__ == "Compose" and isinstance(inner, (list, tuple)):
        yield from _steps(list(inner))
    elif isinstance(transforms, nn.Sequential):
        yield from _steps(list(transforms.children()))
    else:
        yield transforms


def _kind(step: Any) -> str:
    """``normalize``, ``denormalize``, ``resize``, ``crop``, ``identity``, ``random`` or ``other``."""
    name = type(step).__name__
    module = type(step).__module__
    known = module.startswith(("torchvision.transforms", "kornia.augmentation", "kornia.enhance", "torchgeo"))
    if name == "Identity":
        return "identity"
    if known and name == "Normalize":
        return "normalize"
    if known and name == "Denormalize":
        return "denormalize"
    if known and name == "Resize":
        return "resize"
    if known and name == "CenterCrop":
        return "crop"
    if name.startswith("Random") or (isinstance(getattr(step, "p", None), float) and step.p < 1):
        return "random"
    return "other"


def _normalize_values(step: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    flags = getattr(step, "flags", None)
    if isinstance(flags, Mapping) and "mean" in flags and "std" in flags:  # kornia.augmentation
        return _floats(flags["mean"]), _floats(flags["std"])
    return _floats(step.mean), _floats(step.std)  # torchvision v1/v2, kornia.enhance


def torchvision_preset(transforms: Any) -> TransformInfo | None:
    """What a torchvision weights' preset does (``partial(ImageClassification, crop_size=224, ...)``), or None.

    The preset resizes (its interpolation), centre-crops to ``crop_size``, divides 8-bit values by 255 and
    normalises with ImageNet's mean and std: for 8-bit inputs that is one z-score per channel with ``255 * mean``
    and ``255 * std``.
    """
    func = getattr(transforms, "func", None)
    if (
        not isinstance(transforms, functools.partial)
        or getattr(func, "__module__", "") != "torchvision.transforms._presets"
    ):
        return None
    try:
        preset = transforms()
    except Exception:  # noqa: BLE001 - an unknown preset signature: nothing is read from it
        return None
    mean, std = getattr(preset, "mean", None), getattr(preset, "std", None)
    if not isinstance(mean, (list, tuple)) or not isinstance(std, (list, tuple)):
        return None
    crop = getattr(preset, "crop_size", None)
    size = _square(crop[0] if isinstance(crop, (list, tuple)) and len(crop) == 1 else crop) if crop else None
    return TransformInfo(
        mean=tuple(255.0 * float(m) for m in mean),
        std=tuple(255.0 * float(v) for v in std),
        resize_type=_interpolation(preset),
        size=size,
    )


def _interpolation(step: Any) -> str | None:
    flags = getattr(step, "flags", None)
    mode = flags.get("resample") if isinstance(flags, Mapping) else getattr(step, "interpolation", None)
    if mode is None:
        return None
    name = getattr(mode, "name", None) or getattr(mode, "value", None) or str(mode)
    return RESIZE_TYPES.get(str(name).lower())


def _step_size(step: Any) -> Any:
    flags = getattr(step, "flags", None)
    if isinstance(flags, Mapping) and "size" in flags:
        return flags["size"]
    return getattr(step, "size", None)


def read_transforms(transforms: Any) -> TransformInfo:
    """Read normalisation, resize type and output size from torchvision or kornia transforms.

    Reads attributes only (``Normalize.mean``/``.std``, kornia ``flags``, ``Resize.size``/``.interpolation``,
    ``CenterCrop.size``), never ``repr()``. Random augmentations are skipped (they only run in training); any other
    unknown deterministic module draws a warning, because its effect on the input cannot be described.

    Args:
        transforms: a transform, a list of them, a torchvision ``Compose``, an ``nn.Sequential`` or a kornia
            ``AugmentationSequential``; plain functions are skipped.

    Returns:
        The folded normalisation, the ``resize_type`` of the first resize (``crop`` for a crop alone) and the fixed
        output size when the chain has one.
    """
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize_type: str | None = None
    cropped = False
    size: tuple[int, int] | None = None
    import torch.nn as nn

    for step in _steps(transforms):
        kind = _kind(step)
        if kind in ("normalize", "denormalize"):
            m2, s2 = _normalize_values(step)
            if kind == "denormalize":  # x * s + m  ==  (x - (-m / s)) / (1 / s)
                m2, s2 = tuple(-m / s for m, s in zip(*_same_length(m2, s2), strict=True)), tuple(1 / s for s in s2)
            if mean is None or std is None:
                mean, std = m2, s2
            else:
                # (((x - m1) / s1) - m2) / s2  ==  (x - (m1 + m2 * s1)) / (s1 * s2), channel by channel
                m1, m2 = _same_length(mean, m2)
                s1, s2 = _same_length(std, s2)
                m1, s1 = _same_length(m1, s1)
                m2, s2 = _same_length(m2, s2)
                mean = tuple(a + b * c for a, b, c in zip(m1, m2, s1, strict=True))
                std = tuple(a * b for a, b in zip(s1, s2, strict=True))
        elif kind == "resize":
            resize_type = resize_type or _interpolation(step)
            target = _step_size(step)
            fixed = _pair(target)
            if fixed is None and size is not None and size[0] == size[1] and target is not None:
                fixed = _square(target)
            size = fixed
        elif kind == "crop":
            cropped = True
            size = _square(_step_size(step))
        elif kind == "other" and isinstance(step, nn.Module):
            warnings.warn(
                f"Transform {type(step).__module__}.{type(step).__qualname__} cannot be described: value_scaling "
                "and the input size leave it out. Pass value_scaling=/input_shape= when it changes the input.",
                stacklevel=2,
            )
    if resize_type is None and cropped:
        resize_type = "crop"
    return TransformInfo(mean=mean, std=std, resize_type=resize_type, size=size)


def _same_length(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(a) == len(b):
        return a, b
    if len(a) == 1:
        return a * len(b), b
    if len(b) == 1:
        return a, b * len(a)
    raise ConfigurationError(
        f"Chained Normalize steps name {len(a)} and {len(b)} channels.",
        hint="Each Normalize must give one value, or one per channel of the same input.",
    )


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

    meta: Mapping[str, Any] = dict(resolved.meta)
    full_name = str(resolved)
    in_chans = meta.get("in_chans")
    channels = int(in_chans) if isinstance(in_chans, int) else None
    info = torchvision_preset(resolved.transforms) or read_transforms(resolved.transforms)
    if channels is None:
        channels = info.channels
    overrides: dict[str, Any] = {
        "pretrained": True,
        "pretrained_source": str(meta.get("dataset") or full_name),
        "hyperparameters": hyperparameters_from(
            {"weights": full_name, "ssl_method": meta.get("ssl_method"), "resolution": meta.get("resolution")}
        ),
    }
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
    model = meta.get("model") or meta.get("encoder") or meta.get("architecture")
    overrides["name"] = _model_name(f"{model}-{resolved.name}" if model else full_name)
    license_ = meta.get("license")
    if isinstance(license_, str) and license_:
        overrides["license"] = license_ if _LICENSE.match(license_) else "other"
    overrides["links"] = _weights_links(resolved, meta, full_name)
    dataset = meta.get("dataset")
    method = meta.get("ssl_method")
    source = f" pretrained on {dataset}" if dataset else ""
    overrides["description"] = f"Initialised from torchgeo weights {full_name}{source}" + (
        f" ({method})." if method else "."
    )
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


def _torchgeo_class(obj: Any, names: Mapping[str, Any] | Sequence[str]) -> str | None:
    for klass in type(obj).__mro__:
        if klass.__module__.startswith("torchgeo.trainers") and klass.__name__ in names:
            return klass.__name__
    return None


def is_torchgeo_task(obj: Any) -> bool:
    """Whether ``obj`` is a torchgeo trainer (a subclass of ``torchgeo.trainers.BaseTask``)."""
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
        in_channels, -1, -1]`` for siamese change models, ``2 * in_channels`` channels for the others),
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
                hint="Pass a torchgeo.trainers task, or a plain nn.Module together with weights=.",
            )
        trainer_name = type(task).__name__
        tasks: tuple[str, ...] | None = None
    else:
        trainer_name = trainer
        tasks = TRAINER_TASKS[trainer]
    hparams: Mapping[str, Any] = dict(getattr(task, "hparams", {}) or {})
    overrides: dict[str, Any] = {"hyperparameters": hyperparameters_from(hparams)}
    if tasks:
        overrides["tasks"] = list(tasks)
    channels = hparams.get("in_channels")
    model = hparams.get("model")
    if isinstance(channels, int) and not isinstance(channels, bool):
        if trainer_name == "ChangeDetectionTask" and model in SIAMESE_CHANGE_MODELS:
            overrides["input_shape"] = [-1, 2, channels, -1, -1]
        elif trainer_name == "ChangeDetectionTask":
            overrides["input_shape"] = [-1, 2 * channels, -1, -1]
        else:
            overrides["input_shape"] = [-1, channels, -1, -1]
    backbone = hparams.get("backbone")
    parts = [p for p in (model, backbone) if isinstance(p, str) and p]
    if parts:
        overrides["name"] = _model_name("-".join(dict.fromkeys(parts)))
    what = ", ".join(f"{k} {hparams[k]}" for k in ("model", "backbone", "loss") if isinstance(hparams.get(k), str))
    overrides["description"] = f"torchgeo {trainer_name}" + (f" ({what})." if what else ".")
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


# --------------------------------------------------------------------------------------------------------------
# Datasets and datamodules
# --------------------------------------------------------------------------------------------------------------


def _leaves(dataset: Any, depth: int = 0) -> Iterator[Any]:
    """The datasets inside ``dataset``: Intersection/Union/Concat datasets and Subsets are opened."""
    if dataset is None or depth > 8:
        return
    inner = getattr(dataset, "datasets", None)
    if isinstance(inner, (list, tuple)) and inner:
        for child in inner:
            yield from _leaves(child, depth + 1)
        return
    wrapped = getattr(dataset, "dataset", None)
    if wrapped is not None and hasattr(dataset, "indices"):  # torch.utils.data.Subset
        yield from _leaves(wrapped, depth + 1)
        return
    yield dataset


def _band_names(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(b, str) for b in value):
        return list(value)
    return None


def dataset_bands(dataset: Any) -> list[str] | None:
    """Band names of the image part of ``dataset`` (``bands``, else ``all_bands``/``all_band_names``)."""
    for leaf in _leaves(dataset):
        if getattr(leaf, "is_image", True) is False:
            continue
        for attribute in ("bands", "all_bands", "all_band_names"):
            names = _band_names(getattr(leaf, attribute, None))
            if names:
                return names
    return None


def dataset_classes(dataset: Any) -> list[str] | None:
    """Class names of ``dataset`` (its ``classes`` attribute), when it has them."""
    for leaf in _leaves(dataset):
        names = _band_names(getattr(leaf, "classes", None))
        if names:
            return names
    return None


def _is_geo(dataset: Any) -> bool:
    return all(hasattr(dataset, a) for a in ("bounds", "crs", "res", "index"))


def _bounds(dataset: Any) -> tuple[float, float, float, float, Any, Any]:
    """``(xmin, ymin, xmax, ymax, tmin, tmax)`` of a GeoDataset (torchgeo 0.8 slices, or a 0.7 BoundingBox)."""
    bounds = dataset.bounds
    if isinstance(bounds, tuple) and len(bounds) == 3 and all(isinstance(s, slice) for s in bounds):
        x, y, t = bounds
        return float(x.start), float(y.start), float(x.stop), float(y.stop), t.start, t.stop
    return (  # torchgeo < 0.8: BoundingBox(minx, maxx, miny, maxy, mint, maxt)
        float(bounds.minx), float(bounds.miny), float(bounds.maxx), float(bounds.maxy), bounds.mint, bounds.maxt
    )  # fmt: skip


def _as_datetime(value: Any) -> dt.datetime | None:
    """A timezone-aware datetime, or None for torchgeo's 'no date' sentinels (Timestamp.min/max, 0/maxsize)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value <= 0 or value >= 2**62 or not math.isfinite(value):
            return None
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    to_py = getattr(value, "to_pydatetime", None)
    when = to_py() if callable(to_py) else value
    if not isinstance(when, dt.datetime) or when.year <= 1678 or when.year >= 2262:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def wgs84_bounds(bounds: Sequence[float], crs: Any) -> tuple[float, float, float, float]:
    """Transform ``(xmin, ymin, xmax, ymax)`` in ``crs`` to a WGS84 bbox, densifying every edge (21 points).

    Args:
        bounds: the box in ``crs`` units.
        crs: anything ``pyproj.CRS.from_user_input`` takes (pyproj or rasterio CRS, EPSG code, WKT).
    """
    from pyproj import CRS, Transformer

    source = CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") and not isinstance(crs, CRS) else crs)
    transformer = Transformer.from_crs(source, CRS.from_epsg(4326), always_xy=True)
    west, south, east, north = transformer.transform_bounds(*bounds, densify_pts=21)
    return float(west), float(south), float(east), float(north)


def dataset_extent(datasets: Sequence[Any]) -> dict[str, Any]:
    """``bbox``, ``start_datetime``/``end_datetime`` and CRS/resolution hyperparameters of GeoDatasets.

    The bbox is the union of each dataset's bounds transformed to WGS84 (:func:`wgs84_bounds`); the time span
    is left out when the datasets carry no dates.
    """
    boxes: list[tuple[float, float, float, float]] = []
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    hyper: dict[str, Any] = {}
    for dataset in datasets:
        if not _is_geo(dataset):
            continue
        xmin, ymin, xmax, ymax, tmin, tmax = _bounds(dataset)
        if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
            continue
        boxes.append(wgs84_bounds((xmin, ymin, xmax, ymax), dataset.crs))
        start, end = _as_datetime(tmin), _as_datetime(tmax)
        if start is not None and end is not None:
            starts.append(start)
            ends.append(end)
        if "crs" not in hyper and dataset.crs is not None:
            crs = dataset.crs
            hyper["crs"] = crs.to_string() if hasattr(crs, "to_string") else str(crs)
        if "resolution" not in hyper:
            res = dataset.res
            hyper["resolution"] = [float(r) for r in res] if isinstance(res, (list, tuple)) else float(res)
    if not boxes:
        return {}
    extent: dict[str, Any] = {
        "bbox": [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ],
        "hyperparameters": hyper,
    }
    if starts:
        extent["start_datetime"] = min(starts)
        extent["end_datetime"] = max(ends)
    return extent


def _splits(datamodule: Any) -> list[tuple[str, Any]]:
    if hasattr(datamodule, "__getitem__"):  # a dataset was passed instead of a datamodule: the training split
        return [("train", datamodule)]
    found = [(split, getattr(datamodule, attr, None)) for attr, split in SPLITS.items()]
    found = [(split, ds) for split, ds in found if ds is not None]
    if not found and getattr(datamodule, "dataset", None) is not None:
        found = [("train", datamodule.dataset)]
    return found


def _dataset_name(dataset: Any) -> str:
    leaves = list(_leaves(dataset))
    images = [d for d in leaves if getattr(d, "is_image", True) is not False] or leaves or [dataset]
    return type(images[0]).__name__


def _split_links(splits: Sequence[tuple[str, Any]], hrefs: Mapping[str, str] | None) -> list[Link]:
    links = []
    placeholders: list[str] = []
    for split, dataset in splits:
        name = _dataset_name(dataset)
        href = (hrefs or {}).get(split)
        if href is None:
            href = f"./datasets/{quote(name, safe='')}/{split}"
            placeholders.append(f"{split} -> {href}")
        elif os.path.isabs(href) or urlparse(href).scheme == "file":
            raise ConfigurationError(
                f"dataset_hrefs[{split!r}]={href!r} is a local path.",
                hint="Give a public URL or a relative href; absolute local paths are never published.",
            )
        links.append(Link("derived_from", href, "application/json", f"{name} ({split} split)", {"ml-aoi:split": split}))
    if placeholders:
        warnings.warn(
            f"derived_from links use placeholder hrefs ({'; '.join(placeholders)}): readers cannot follow them. "
            "Pass dataset_hrefs={'train': URL, ...} with the public location of each split.",
            UserWarning,
            stacklevel=3,
        )
    return links


def datamodule_overrides(datamodule: Any, *, dataset_hrefs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``export_item`` overrides for a torchgeo datamodule (after ``setup``) or a single dataset.

    Args:
        datamodule: a ``LightningDataModule`` whose ``train_dataset``/``val_dataset``/``test_dataset`` are set
            (``trainer.fit`` does that), or a dataset, taken as the training split.
        dataset_hrefs: public href per split (``train``, ``validate``, ``test``) for the ``derived_from`` links.

    Returns:
        ``bands``, ``value_scaling``/``resize_type`` (from the dataset's ``transforms`` and the datamodule's
        ``predict_aug`` or ``aug``), ``input_shape`` (bands and ``patch_size``), WGS84 ``bbox`` and time span,
        ``hyperparameters`` (``crs``, ``resolution``), ``derived_from`` ``links`` and ``classes`` (class names of
        the dataset, used by :func:`export_torchgeo` when their number matches the task's).
    """
    splits = _splits(datamodule)
    if not splits:
        warnings.warn(
            f"{type(datamodule).__qualname__} has no train/val/test dataset yet: call datamodule.setup('fit') "
            "before exporting to record bands, extent and dataset links.",
            stacklevel=2,
        )
    datasets = [ds for _, ds in splits]
    overrides: dict[str, Any] = {}
    bands = next((b for b in map(dataset_bands, datasets) if b), None)
    if bands:
        overrides["bands"] = bands
    classes = next((c for c in map(dataset_classes, datasets) if c), None)
    if classes:
        overrides["classes"] = classes

    chain: list[Any] = []
    if datasets:
        chain.extend(getattr(leaf, "transforms", None) for leaf in _leaves(datasets[0]))
    chain.append(getattr(datamodule, "predict_aug", None) or getattr(datamodule, "aug", None))
    info = read_transforms([t for t in chain if t is not None and not isinstance(t, (str, bytes))])
    channels = len(bands) if bands else info.channels
    scaling = info.value_scaling(channels)
    if scaling is not None:
        overrides["value_scaling"] = scaling
    if info.resize_type is not None:
        overrides["resize_type"] = info.resize_type
    patch = getattr(datamodule, "patch_size", None)
    size = info.size or (_square(patch) if isinstance(patch, (int, list, tuple)) else None)
    if channels is not None or size is not None:
        # The patch size is what the model was fed, not what it accepts: export_torchgeo dry-runs at this size and
        # lets probing measure whether height and width are dynamic.
        overrides["input_shape"] = [-1, channels or -1, *(size or (-1, -1))]

    extent = dataset_extent(datasets)
    if extent:
        overrides.update(extent)
    if splits:
        overrides["links"] = _split_links(splits, dataset_hrefs)
        names = sorted({_dataset_name(ds) for ds in datasets})
        place = f" in {extent['hyperparameters']['crs']}" if extent.get("hyperparameters", {}).get("crs") else ""
        overrides["description"] = f"Trained on {', '.join(names)}{place}."
    return overrides


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
            stacklevel=3,
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
    return 2 if len(shape) == 5 else 1


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
            stacklevel=3,
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
    is_task = task_or_model is not None and is_torchgeo_task(task_or_model)
    built_with = captured_weights(task_or_model) if is_task else None
    if weights is None and is_task:
        weights = built_with
    from_weights = weights_overrides(weights) if weights is not None else {}
    if is_task and weights is not None and built_with in (None, False) and from_weights.get("pretrained"):
        warnings.warn(
            f"weights={weights} describe pretraining, but the task was built with weights={built_with}: "
            "mlm:pretrained is left unset (only the weights' bands and transforms are used).",
            UserWarning,
            stacklevel=2,
        )
        from_weights = {k: v for k, v in from_weights.items() if k not in ("pretrained", "pretrained_source")}
    if is_task and not from_weights:
        from_weights = {"pretrained": False}  # built from scratch: MLM wants pretrained false, source null
    from_task = task_overrides(task_or_model) if is_task else {}
    from_data = datamodule_overrides(datamodule, dataset_hrefs=dataset_hrefs) if datamodule is not None else {}

    task_shape = from_task.get("input_shape")
    weights_shape = from_weights.get("input_shape")
    if task_shape and weights_shape and len(task_shape) == len(weights_shape):
        axis = _channel_axis(task_shape)
        if -1 not in (task_shape[axis], weights_shape[axis]) and task_shape[axis] != weights_shape[axis]:
            raise ConfigurationError(
                f"weights {weights} expect {weights_shape[axis]} input channels but the task has "
                f"in_channels={task_shape[axis]}.",
                hint="Build the task with the weights' in_chans, or pass the weights it was really built with.",
            )
    shapes = [s for s in (task_shape, from_data.get("input_shape"), weights_shape) if s]
    shape = _merge_shapes(shapes)
    channels = shape[_channel_axis(shape)] if shape else -1
    # Change models that stack both dates on the channel axis see every band twice.
    stacked = bool(is_task and shape and len(shape) == 4 and _torchgeo_class(task_or_model, ("ChangeDetectionTask",)))
    repeats = 2 if stacked else 1
    per_date = channels // repeats if channels != -1 and channels % repeats == 0 else -1

    merged = merge_export_options(
        {k: v for k, v in from_weights.items() if k not in ("input_shape", "description")},
        {k: v for k, v in from_task.items() if k not in ("input_shape", "description")},
        {k: v for k, v in from_data.items() if k not in ("input_shape", "description", "classes")},
    )
    bands = _first_fitting([from_data.get("bands"), from_weights.get("bands")], per_date, allow_one=False)
    scaling = _first_fitting([from_data.get("value_scaling"), from_weights.get("value_scaling")], per_date)
    merged.pop("bands", None)
    merged.pop("value_scaling", None)
    if bands is not None:
        merged["bands"] = [f"{b}_t{i}" for i in (1, 2) for b in bands] if stacked else bands
    if scaling is not None:
        if len(scaling) == 1 and per_date != -1:
            scaling = scaling * per_date
        merged["value_scaling"] = scaling * repeats
    merged.pop("resize_type", None)
    resize = _resize_type(from_data, from_weights, datamodule is not None)
    if resize is not None:
        merged["resize_type"] = resize
    if shape is not None:
        merged["input_shape"] = shape

    count = _class_count(task_or_model) if is_task else None
    names = from_data.get("classes")
    if count is not None and names and len(names) == count:
        merged["classes"] = names
    texts = [layer.get("description") for layer in (from_task, from_weights, from_data)]
    text = " ".join(t for t in texts if t)
    if text:
        merged["description"] = text
    return merged


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
        task_or_model: a ``torchgeo.trainers`` task, or a plain ``nn.Module`` (then pass ``weights=``).
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
        >>> from torchgeo.trainers import SemanticSegmentationTask
        >>> task = SemanticSegmentationTask(backbone="resnet18", in_channels=4, num_classes=3)
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
    "TRAINER_TASKS",
    "TransformInfo",
    "captured_weights",
    "datamodule_overrides",
    "dataset_bands",
    "dataset_classes",
    "dataset_extent",
    "export_torchgeo",
    "is_torchgeo_task",
    "read_transforms",
    "resolve_weights",
    "task_overrides",
    "torchgeo_overrides",
    "torchvision_preset",
    "weights_overrides",
    "wgs84_bounds",
]
