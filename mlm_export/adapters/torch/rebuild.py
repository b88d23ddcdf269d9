"""Rebuild a module from weights: ``model_class`` resolution, meta-device build, state_dict fitting, hyperparameters."""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mlm_export.adapters.torch.boundary import LOAD_STATE_DICT_ERRORS, _first_line, _loading
from mlm_export.errors import (
    ArtifactLoadError,
    ConfigurationError,
)

if TYPE_CHECKING:
    from mlm_export.adapters import ExportOptions


def _resolve_model_class(spec: Any) -> Callable[..., Any]:
    if isinstance(spec, str):
        try:
            spec = pkgutil.resolve_name(spec)  # "pkg.mod:Class", "pkg.mod:Outer.Inner" or "pkg.mod.Class"
        except ValueError as exc:
            raise ConfigurationError(
                f"model_class={spec!r} is not an importable name.", hint="Use 'package.module:ClassName'."
            ) from exc
        except ImportError as exc:
            raise ConfigurationError(
                f"model_class={spec!r}: cannot import module {exc.name or ''!r} ({exc}).",
                hint="Check the spelling and that the package is installed.",
            ) from exc
        except AttributeError as exc:
            raise ConfigurationError(f"model_class={spec!r}: {exc}.", hint="Use 'package.module:ClassName'.") from exc
    if not callable(spec):
        raise ConfigurationError(
            f"model_class={spec!r} is not a class or factory.", hint="Pass a class, a factory or 'pkg.module:Class'."
        )
    return spec


def _init_kwargs(factory: Callable[..., Any], hyper: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's hyperparameters that ``factory`` accepts (all of them when it takes ``**kwargs``)."""
    if not hyper:
        return {}
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    parameters = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(hyper)
    accepted = {n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in hyper.items() if k in accepted}


def _build_on_meta(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Build the model without allocating or initialising weights (they are replaced by the file's anyway).

    Returns None when the factory cannot run on the meta device; the caller then builds it normally.
    """
    try:
        with torch.device("meta"):
            module = factory(**kwargs)
    except Exception:  # noqa: BLE001 - any failure on meta: build it normally, where errors are reported
        return None
    return module if isinstance(module, torch.nn.Module) else None


def _construct(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call ``model_class(**kwargs)``; whatever it raises (offline download, bad kwargs...) becomes a typed error."""
    try:
        return factory(**kwargs)
    except Exception as exc:
        name = getattr(factory, "__qualname__", None) or repr(factory)
        raise ConfigurationError(
            f"model_class {name} raised {type(exc).__name__} when built with {sorted(kwargs)}: {_first_line(exc)}",
            hint="Fix the model's constructor arguments (model_kwargs= / --model-kwargs); a constructor that "
            "downloads weights needs them in the local cache or weights=None.",
        ) from exc


def _has_meta_tensors(module: Any) -> bool:
    """Whether any parameter, buffer or plain tensor attribute (e.g. ``example_input_array``) is still on meta."""
    tensors = [*module.parameters(), *module.buffers()]
    for sub in module.modules():
        tensors += [v for v in vars(sub).values() if isinstance(v, torch.Tensor)]
    return any(t.is_meta for t in tensors)


def _can_assign(own: Mapping[str, Any], tensors: Mapping[str, Any]) -> bool:
    """Whether the file's tensors can replace the module's as they are (same dtypes, every key present)."""
    return all(key in tensors and tensors[key].dtype == value.dtype for key, value in own.items())


def _rebuild(
    path: Path,
    state_dict: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    hyper: Mapping[str, Any],
    options: ExportOptions,
    *,
    header: Mapping[str, tuple[tuple[int, ...], str]] | None,
    holds: str = "a bare state_dict",
) -> tuple[nn.Module, list[str]]:
    """Build ``options.load.model_class`` and load the file's weights into it, checking keys and shapes first.

    ``holds`` says what the file is in error messages ("a bare state_dict", "a Lightning checkpoint with a
    state_dict"...).
    """
    factory, kwargs, module, notes = _build_model(path, state_dict, hyper, options, header=header, holds=holds)
    own = {k: v for k, v in module.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    expected = {k: tuple(v.shape) for k, v in own.items()}
    tied = _tied_keys(own)
    if header is not None:
        stored = {k: shape for k, (shape, _dtype) in header.items()}
    else:
        stored = {k: tuple(v.shape) for k, v in state_dict.items()}  # type: ignore[union-attr]
    prefix = _matching_prefix(stored, expected, tied)
    if prefix is None:
        raise ArtifactLoadError(_mismatch_message(path, factory, stored, expected, tied), hint=(
            "Pass the model_class (and model_kwargs) that wrote this file."
        ))  # fmt: skip
    if prefix:
        notes.append(f"The weights' key prefix {prefix!r} was stripped to fit {type(module).__name__}.")
    tensors = state_dict() if callable(state_dict) else state_dict
    tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    on_meta = any(t.is_meta for t in own.values())
    if on_meta and (tied or not _can_assign(own, tensors)):  # assigning would untie shared weights
        module, on_meta = _construct(factory, kwargs), False
    with _loading(path, f"weights of {type(module).__name__}", LOAD_STATE_DICT_ERRORS):
        result = module.load_state_dict(tensors, strict=False, assign=on_meta)
    if on_meta and _has_meta_tensors(module):
        # Something the file does not hold (a non-persistent buffer, a tied weight) was left unmaterialised.
        module = _construct(factory, kwargs)
        with _loading(path, f"weights of {type(module).__name__}", LOAD_STATE_DICT_ERRORS):
            result = module.load_state_dict(tensors, strict=False)
    left = [k for k in result.missing_keys if not (tied.get(k, set()) & tensors.keys())]
    if left or result.unexpected_keys:
        raise ArtifactLoadError(
            f"The weights in '{path}' do not fit {type(module).__name__}: missing {_listing(left)}; "
            f"unexpected {_listing(list(result.unexpected_keys))}.",
            hint="Pass the model_class (and model_kwargs) that wrote this file.",
        )
    return module, notes


def _build_model(
    path: Path,
    state_dict: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    hyper: Mapping[str, Any],
    options: ExportOptions,
    *,
    header: Mapping[str, tuple[tuple[int, ...], str]] | None,
    holds: str = "a bare state_dict",
) -> tuple[Callable[..., Any], dict[str, Any], nn.Module, list[str]]:
    """The factory, its keyword arguments, the module it built (on the meta device when it can) and notes.

    Raises:
        ConfigurationError: no ``model_class``, or it cannot be built / does not build an ``nn.Module``.
    """
    notes: list[str] = []
    if options.load.model_class is None:
        count = len(header) if header is not None else len(state_dict)  # type: ignore[arg-type]
        raise ConfigurationError(
            f"'{path}' holds {holds} ({count} tensors) without the model's architecture: model_class= is missing.",
            hint="Pass model_class= (a class or 'pkg.module:Class') and model_kwargs= to rebuild the model.",
        )
    factory = _resolve_model_class(options.load.model_class)
    from_hparams = _init_kwargs(factory, hyper)
    kwargs = {**from_hparams, **dict(options.load.model_kwargs or {})}
    module = _build_on_meta(factory, kwargs)
    module = module if module is not None else _construct(factory, kwargs)
    if not isinstance(module, torch.nn.Module):
        raise ConfigurationError(
            f"model_class returned a {type(module).__name__}, not a torch.nn.Module.",
            hint="Pass the model's class (or a factory returning an nn.Module).",
        )
    if from_hparams:
        notes.append(f"The model was built with the file's hyper_parameters {sorted(from_hparams)}.")
    return factory, kwargs, module, notes


def _tied_keys(tensors: Mapping[str, Any]) -> dict[str, set[str]]:
    """Map each key to the other keys sharing its memory (tied weights that safetensors.save_model stores once)."""
    groups: dict[tuple[int, int, tuple[int, ...]], set[str]] = {}
    for key, tensor in tensors.items():
        if tensor.is_meta:  # no memory yet: tied weights are the same Parameter object
            groups.setdefault((id(tensor), 0, tuple(tensor.shape)), set()).add(key)
        elif tensor.numel():
            groups.setdefault((tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape)), set()).add(key)
    return {k: group - {k} for group in groups.values() if len(group) > 1 for k in group}


def _matching_prefix(
    stored: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    tied: Mapping[str, set[str]],
) -> str | None:
    """'' when the keys fit as they are, a prefix ('model.', 'module.'...) whose removal makes them fit, else None.

    A key of the model missing from the file is fine when a key tied to it (same memory) is there.
    """
    candidates = [""]
    firsts = {k.split(".", 1)[0] + "." for k in stored if "." in k}
    candidates += [*sorted(firsts), "module.", "model.", "net.", "_orig_mod."]
    for prefix in dict.fromkeys(candidates):
        stripped = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
        if not stripped or not stripped.keys() <= expected.keys():
            continue
        if any(stripped[k] != expected[k] for k in stripped):
            continue
        if all(k in stripped or tied.get(k, set()) & stripped.keys() for k in expected):
            return prefix
    return None


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _mismatch_message(
    path: Path,
    factory: Any,
    stored: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    tied: Mapping[str, set[str]],
) -> str:
    missing = [k for k in expected if k not in stored and not tied.get(k, set()) & stored.keys()]
    unexpected = [k for k in stored if k not in expected]
    shapes = [
        f"{k} {list(stored[k])} vs {list(expected[k])}" for k in expected if k in stored and stored[k] != expected[k]
    ]
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches (file vs model) ({len(shapes)}): {_listing(shapes)}")
    name = getattr(factory, "__qualname__", repr(factory))
    return f"The weights in '{path}' do not fit model_class {name}: " + "; ".join(parts) + "."


def _json_safe(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """(True, a JSON-safe copy) or (False, None) when ``value`` has no faithful JSON form."""
    if depth > 8:
        return False, None
    if value is None or isinstance(value, (bool, str)):
        return True, value
    if isinstance(value, int):
        return True, int(value)
    if isinstance(value, float):
        return (True, value) if math.isfinite(value) else (False, None)
    if isinstance(value, Enum):
        return _json_safe(value.value, depth + 1) if isinstance(value.value, (str, int, float)) else (True, value.name)
    if isinstance(value, os.PathLike):
        return True, os.fspath(value)
    if isinstance(value, (torch.dtype, torch.Size, torch.Tensor)) or type(value).__module__ == "numpy":
        return _framework_json_safe(value, depth)
    if isinstance(value, Mapping):
        return True, _json_safe_mapping(value, depth + 1)
    if isinstance(value, (list, tuple, set, frozenset)):
        converted = [_json_safe(entry, depth + 1) for entry in value]
        return (True, [c for _, c in converted]) if all(ok for ok, _ in converted) else (False, None)
    return False, None


def _framework_json_safe(value: Any, depth: int) -> tuple[bool, Any]:
    """Torch dtypes, sizes and one-element tensors, numpy scalars."""
    if isinstance(value, torch.dtype):
        return True, str(value).removeprefix("torch.")
    if isinstance(value, torch.Size):
        return True, list(value)
    if isinstance(value, torch.Tensor):
        return _json_safe(value.item(), depth + 1) if value.numel() == 1 else (False, None)
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(ValueError, TypeError):
            return _json_safe(item(), depth + 1)
    return False, None


def _json_safe_mapping(values: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in values.items():
        ok, converted = _json_safe(value, depth)
        if ok:
            result[str(key)] = converted
    return result


def _module_hyperparameters(module: nn.Module) -> dict[str, Any]:
    hyper: dict[str, Any] = {}
    hparams = getattr(module, "hparams", None)
    if isinstance(hparams, Mapping):
        hyper.update(_json_safe_mapping(hparams))
    num_classes = hyper.get("num_classes", getattr(module, "num_classes", None))
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes > 0:
        hyper["num_classes"] = num_classes
    return hyper
