"""Generic readers of transforms, datasets and datamodules -> override values for :func:`mlm_export.export_item`.

Shared by the torchgeo hook (:mod:`mlm_export.integrations.torchgeo`) and the Lightning callback
(:mod:`mlm_export.integrations.lightning`). Nothing here opens, runs or measures a model: it reads the attributes of
transform objects (torchvision, kornia, torchgeo) and of datasets (bands, bounds, CRS, resolution, time span).

* ``value_scaling`` / ``resize_type`` / spatial size: the datamodule's augmentation (``predict_aug``, else ``aug``)
  and the dataset's own ``transforms``. Chained ``Normalize`` steps are folded into one z-score per band
  (``mean = m1 + m2 * s1``, ``stddev = s1 * s2``).
* extent: the union of the train/val/test GeoDatasets' bounds, transformed to WGS84 with
  ``pyproj.Transformer.transform_bounds(..., densify_pts=21)``, and their time span.
* dataset links: each split becomes a ``derived_from`` link with ``ml-aoi:split`` (``train``, ``validate``,
  ``test``). Its href is ``dataset_hrefs[split]`` when given, otherwise a relative placeholder
  ``./datasets/<DatasetClass>/<split>`` so that no local path is published.

.. versionadded:: 0.1
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

from mlm_export.description import Link, ValueScaling
from mlm_export.errors import ConfigurationError

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


__all__ = [
    "RESIZE_TYPES",
    "SPLITS",
    "TransformInfo",
    "datamodule_overrides",
    "dataset_bands",
    "dataset_classes",
    "dataset_extent",
    "read_transforms",
    "wgs84_bounds",
]
