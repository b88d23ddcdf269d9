"""How the Item alone rebuilds an in-memory model: ``model_class`` and ``model_kwargs`` in ``mlm:hyperparameters``.

``export_item(module)`` records ``model_class = "module:qualname"`` of the module's class when
:func:`pkgutil.resolve_name` returns that very class (a class in a folder on ``PYTHONPATH``, in a git work tree or
in an installed package), and ``model_kwargs`` when the constructor's arguments are known: given by the caller,
or the module's own ``hparams`` (Lightning's ``save_hyperparameters``, or a module that sets ``self.hparams``)
when they are JSON data that fit the constructor's signature. A stored configuration (timm's ``pretrained_cfg``)
is not read as arguments: it does not say how to call the constructor.

When the Item cannot rebuild the model (a class from ``__main__``, a notebook or a function; a container such as
``nn.Sequential``, built from layer objects; a constructor that needs arguments nobody knows), a warning at export
time says what is missing and which argument supplies it.

.. versionadded:: 0.3
"""

from __future__ import annotations

import inspect
import json
import pkgutil
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlm_export.provenance.source_code import entrypoint_of

#: Constructor arguments that download pre-trained weights when true: recorded false (the Item's weights asset holds
#: the weights), so that neither the export's check nor a rebuild downloads anything.
_DOWNLOADING = ("weights", "pretrained", "pretrained_backbone", "pretrained_weights")
#: Containers built from layer objects: their constructor's arguments cannot be JSON data.
_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict")


@dataclass(frozen=True)
class RebuildRecipe:
    """``model_class`` (``"pkg.module:Class"``) and ``model_kwargs`` read from a module; ``missing`` says why not."""

    model_class: str | None = None
    model_kwargs: dict[str, Any] | None = None
    #: What the Item lacks to rebuild the model (None when it can), and the argument that supplies it.
    missing: tuple[str, str] | None = None


def _in_memory_class(model: Any) -> type | None:
    """The class of an eager ``nn.Module`` (None for files, graphs and compiled modules)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return None
    if isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule)):
        return None  # compiled: the artifact runs without its class
    return type(model)


def importable_entrypoint(cls: type) -> str | None:
    """``"module:qualname"`` of ``cls`` when importing that name gives ``cls`` itself, else None."""
    entrypoint = entrypoint_of(cls)
    if entrypoint is None:
        return None
    try:
        resolved = pkgutil.resolve_name(entrypoint)
    except Exception:  # noqa: BLE001 - any import failure means the name does not rebuild it
        return None
    return entrypoint if resolved is cls else None


def _signature(cls: type) -> inspect.Signature | None:
    try:
        return inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None


def _required(signature: inspect.Signature) -> list[str]:
    """Constructor parameters without a default (``self`` left out)."""
    params = list(signature.parameters.values())[1:]
    return [
        p.name
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _fits(kwargs: Mapping[str, Any], signature: inspect.Signature) -> bool:
    """Whether ``cls(**kwargs)`` binds: every key is a parameter (or ``**kwargs`` exists), every required one given."""
    params = list(signature.parameters.values())[1:]
    if any(p.kind is p.POSITIONAL_ONLY for p in params):
        return False
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_keywords = any(p.kind is p.VAR_KEYWORD for p in params)
    return (open_keywords or set(kwargs) <= names) and set(_required(signature)) <= set(kwargs)


def _json_data(values: Mapping[str, Any]) -> dict[str, Any] | None:
    if not all(isinstance(k, str) for k in values):
        return None
    try:
        return json.loads(json.dumps(dict(values), allow_nan=False))
    except (TypeError, ValueError):
        return None


def _hparams_kwargs(model: Any, signature: inspect.Signature) -> dict[str, Any] | None:
    """The module's own ``hparams`` as constructor arguments, when they are JSON data that fit the signature."""
    hparams = getattr(model, "hparams", None)
    if not isinstance(hparams, Mapping) or not hparams:
        return None
    kwargs = _json_data(hparams)
    if kwargs is not None:
        kwargs = {k: (None if k == "weights" else False) if k in _DOWNLOADING and v else v for k, v in kwargs.items()}
    return kwargs if kwargs is not None and _fits(kwargs, signature) and rebuilds(type(model), kwargs, model) else None


def _shapes(module: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if hasattr(v, "shape")}


def rebuilds(cls: type, kwargs: Mapping[str, Any], model: Any) -> bool:
    """Whether ``cls(**kwargs)`` has ``model``'s state_dict keys and shapes (built on the meta device: no memory)."""
    torch = sys.modules["torch"]
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = cls(**kwargs)
        return _shapes(built) == _shapes(model)
    except Exception:  # noqa: BLE001 - a constructor that fails with these arguments does not rebuild the model
        return False


def recipe_of(
    model: Any, *, model_class: Any = None, model_kwargs: Mapping[str, Any] | None = None
) -> RebuildRecipe | None:
    """How the Item rebuilds the in-memory ``model`` (None when ``model`` is not an eager ``nn.Module``).

    ``model_class`` given by the caller wins (its recording is the caller's); only the keyword arguments are then
    read from the module's ``hparams``, when ``model_class`` names the module's own class.
    """
    cls = _in_memory_class(model)
    if cls is None:
        return None
    name = cls.__qualname__
    if model_class is not None:
        same = model_class is cls or (isinstance(model_class, str) and model_class == importable_entrypoint(cls))
        signature = _signature(cls) if same and model_kwargs is None else None
        kwargs = _hparams_kwargs(model, signature) if signature is not None else None
        return RebuildRecipe(None, kwargs)
    entrypoint = importable_entrypoint(cls)
    if entrypoint is None:
        where = "in __main__, a notebook or a function" if entrypoint_of(cls) is None else "where its name"
        why = f"{name} is defined {where}" + ("" if entrypoint_of(cls) is None else " does not import it")
        return RebuildRecipe(missing=(why, "model_class"))
    if cls.__name__ in _CONTAINERS and cls.__module__.startswith("torch.nn"):
        return RebuildRecipe(missing=(f"{name} is built from layer objects, which model_kwargs cannot hold",
                                      "model_class"))  # fmt: skip
    if model_kwargs is not None:  # not a mapping: export_options refuses it
        return RebuildRecipe(entrypoint, dict(model_kwargs) if isinstance(model_kwargs, Mapping) else None)
    signature = _signature(cls)
    if signature is None:
        return RebuildRecipe(entrypoint, missing=(f"the arguments of {name}() cannot be read", "model_kwargs"))
    from_hparams = _hparams_kwargs(model, signature)
    if from_hparams is not None:
        return RebuildRecipe(entrypoint, from_hparams)
    required = _required(signature)
    if required:
        why = f"{name}() needs arguments ({', '.join(required)}) that are unknown"
        return RebuildRecipe(entrypoint, missing=(why, "model_kwargs"))
    if not rebuilds(cls, {}, model):
        why = f"{name}() with its default arguments builds other weights than this model's"
        return RebuildRecipe(entrypoint, missing=(why, "model_kwargs"))
    return RebuildRecipe(entrypoint)


def warn_unrebuildable(recipe: RebuildRecipe | None, *, stacklevel: int = 4) -> None:
    """One warning naming what the Item lacks to rebuild the model, and the argument that supplies it."""
    if recipe is None or recipe.missing is None:
        return
    what, argument = recipe.missing
    warnings.warn(
        f"The Item alone cannot rebuild this model: {what}. Pass {argument}= (--{argument.replace('_', '-')}) so "
        "that check_item/load_model can rebuild it from the weights (model_class='pkg.module:Class', "
        "model_kwargs={...}).",
        stacklevel=stacklevel,
    )


__all__ = ["RebuildRecipe", "importable_entrypoint", "recipe_of", "warn_unrebuildable"]
