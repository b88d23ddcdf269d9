"""Adapter registry: which module describes which source. Imports nothing heavy.

Each adapter package exposes ``can_describe(source) -> bool``, ``measure(source, options: ExportOptions) ->
Measured`` (the description plus the writer of its artifacts; writes nothing), ``describe(source, options) ->
ModelDescription`` (measure, then write and publish at once), ``load_artifact`` and ``run_artifact`` (for
:mod:`mlm_export.loading`). Importing an adapter imports its framework; this registry imports an adapter only when
a source needs it and turns a missing framework into :class:`~mlm_export.errors.MissingDependencyError`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from mlm_export.errors import ArtifactNotFoundError, MissingDependencyError, SourceError, UnsupportedSourceError

#: File suffix -> adapter module.
ADAPTERS_BY_SUFFIX: dict[str, str] = {
    ".pt": "mlm_export.adapters.torch",
    ".pth": "mlm_export.adapters.torch",
    ".ckpt": "mlm_export.adapters.torch",
    ".bin": "mlm_export.adapters.torch",
    ".safetensors": "mlm_export.adapters.torch",
    ".pt2": "mlm_export.adapters.torch",
    ".onnx": "mlm_export.adapters.onnx",
}
#: Top-level package of an in-memory object -> adapter module.
ADAPTERS_BY_PACKAGE: dict[str, str] = {
    "torch": "mlm_export.adapters.torch",
    "torchvision": "mlm_export.adapters.torch",
    "torchgeo": "mlm_export.adapters.torch",
    "lightning": "mlm_export.adapters.torch",
    "pytorch_lightning": "mlm_export.adapters.torch",
    "timm": "mlm_export.adapters.torch",
    "segmentation_models_pytorch": "mlm_export.adapters.torch",
    "onnx": "mlm_export.adapters.onnx",
}
#: Extra that provides each adapter's dependencies.
EXTRAS = {"mlm_export.adapters.torch": "torch", "mlm_export.adapters.onnx": "onnx"}


@dataclass(frozen=True)
class LoadOptions:
    """How an adapter opens and rebuilds the model (also what :mod:`mlm_export.loading` passes back)."""

    #: The ``nn.Module`` class (or ``"pkg.mod:Class"``) a weights-only file is loaded into.
    model_class: Any = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Allow pickle code in the file to run (``torch.load(weights_only=False)``).
    trust_pickle: bool = False
    #: Where the model is loaded and run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).
    device: Any = "cpu"


@dataclass(frozen=True)
class ProbeOptions:
    """What the dry-run feeds the model and how far it searches for dynamic dimensions."""

    example_input: Any = None
    input_shape: Any = None
    input_dtype: Any = None
    #: Axis names of each input when a framework adapter knows them better than the rank (Conv1d, RNN...).
    input_dim_orders: tuple[tuple[str, ...], ...] | None = None
    probe_dynamic: bool = True


@dataclass(frozen=True)
class ArtifactOptions:
    """What artifact files an in-memory model becomes, where, and what they embed."""

    artifact_dir: Path | None = None
    artifact_format: str | None = None
    overwrite: bool = False
    embed_metadata: bool = False
    #: The MLM properties written into the artifact when ``embed_metadata`` (see :mod:`mlm_export.embedded`).
    metadata: Mapping[str, Any] = field(default_factory=dict)


#: The option groups, by the name of their field in :class:`ExportOptions`.
OPTION_GROUPS: dict[str, type[LoadOptions | ProbeOptions | ArtifactOptions]] = {
    "load": LoadOptions,
    "probe": ProbeOptions,
    "artifact": ArtifactOptions,
}


def _group_of(name: str) -> str:
    for group, klass in OPTION_GROUPS.items():
        if name in klass.__dataclass_fields__:
            return group
    raise TypeError(f"{name!r} is not an export option")


@dataclass(frozen=True)
class ExportOptions:
    """What the caller told ``export_item`` that an adapter needs to measure the model, in three groups.

    Build it from ``export_item``'s flat argument names with :meth:`from_flat`; change it with :meth:`updated`.
    """

    load: LoadOptions = field(default_factory=LoadOptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    artifact: ArtifactOptions = field(default_factory=ArtifactOptions)
    #: Where an adapter may write files it must measure (an ONNX export): the run's staging directory, created on
    #: first call. None: the adapter uses a temporary directory of its own and writes nothing that stays.
    scratch: Callable[[], Path] | None = None

    @staticmethod
    def flat_names() -> frozenset[str]:
        """Every option's flat name (the ``export_item`` argument it comes from)."""
        return frozenset(name for klass in OPTION_GROUPS.values() for name in klass.__dataclass_fields__)

    @classmethod
    def from_flat(cls, **values: Any) -> ExportOptions:
        """Options from flat names (``input_shape=...``, ``device=...``), each routed to the group declaring it.

        Raises:
            TypeError: a name is no option.
        """
        return cls().updated(**values)

    def updated(self, **changes: Any) -> ExportOptions:
        """A copy with the options named by their flat names changed (``scratch`` included).

        Raises:
            TypeError: a name is no option.
        """
        scratch = changes.pop("scratch", self.scratch)
        grouped: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            grouped.setdefault(_group_of(name), {})[name] = value
        groups = {group: replace(getattr(self, group), **values) for group, values in grouped.items()}
        return replace(self, scratch=scratch, **groups)


def _import_adapter(module_name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        if not isinstance(exc, ModuleNotFoundError) or (exc.name or "mlm_export").startswith("mlm_export"):
            raise  # a bug in mlm-export itself, not a missing extra
        extra = EXTRAS.get(module_name, "all")
        raise MissingDependencyError(
            f"Describing {what} needs the '{extra}' extra, which is not installed ({exc}).",
            hint=f"pip install 'mlm-export[{extra}]'",
        ) from exc


def adapter_for(source: Any) -> ModuleType:
    """Return the adapter module for ``source`` (an object or a path).

    Raises:
        ArtifactNotFoundError: the path does not exist.
        UnsupportedSourceError: no adapter supports this kind of source.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ArtifactNotFoundError(f"Model file '{path}' does not exist.", hint="Check the path.")
        if path.is_dir():
            raise UnsupportedSourceError(
                f"'{path}' is a directory, not a model file.",
                hint=f"Pass one file with a suffix among {sorted(ADAPTERS_BY_SUFFIX)}.",
            )
        module_name = ADAPTERS_BY_SUFFIX.get(path.suffix.lower())
        if module_name is None:
            raise UnsupportedSourceError(
                f"'{path}' has suffix {path.suffix!r}, which no adapter reads.",
                hint=f"Supported suffixes: {', '.join(sorted(ADAPTERS_BY_SUFFIX))}.",
            )
        return _import_adapter(module_name, f"'{path}'")
    package = type(source).__module__.split(".")[0]
    module_name = ADAPTERS_BY_PACKAGE.get(package)
    if module_name is None:
        for klass in type(source).__mro__:
            module_name = ADAPTERS_BY_PACKAGE.get(klass.__module__.split(".")[0])
            if module_name is not None:
                break
    if module_name is None:
        raise UnsupportedSourceError(
            f"Cannot describe an object of type {type(source).__module__}.{type(source).__qualname__}.",
            hint="Pass a torch.nn.Module, TorchScript module, ExportedProgram, onnx.ModelProto or a model file path.",
        )
    adapter = _import_adapter(module_name, f"a {type(source).__qualname__}")
    if not adapter.can_describe(source):
        raise SourceError(
            f"The {module_name.rsplit('.', 1)[-1]} adapter cannot describe a {type(source).__qualname__}."
        )
    return adapter
