"""Run an MLM Processing Expression (``{format, expression}``) on arrays, safely or not at all.

* ``gdal-calc``: arithmetic evaluated by numexpr (no Python ``eval``); variables are band names and ``x``/``A``
  (the array the expression applies to).
* ``rio-calc``: S-expressions, evaluated by snuggs when it is installed; otherwise refused.
* ``python``: ``pkg.module:function`` called with the array (or, for a band expression, a dict of band arrays);
  imported only with ``trust_code``.

Any other format (``openeo``, ``docker``, ``uri``...) is refused with :class:`UnsupportedExpressionError` naming
it: an expression is never skipped silently.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlm_export.errors import UnsupportedExpressionError, UntrustedCodeError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMEXPR_NAMES = {"where", "sqrt", "exp", "log", "log10", "abs", "sin", "cos", "tan", "arctan2", "minimum", "maximum",
                  "e", "pi", "True", "False", "and", "or", "not"}  # fmt: skip


def evaluate(
    expression: Mapping[str, Any], variables: Mapping[str, np.ndarray], *, trust_code: bool, where: str
) -> np.ndarray:
    """The value of ``expression`` over ``variables`` (name -> array); ``where`` names it in errors.

    Raises:
        UnsupportedExpressionError: the format cannot be run here, or the expression fails.
        UntrustedCodeError: a ``python`` expression without ``trust_code``.
    """
    kind = str(expression.get("format", "")).lower()
    text = expression.get("expression")
    if kind == "gdal-calc":
        return _numexpr(str(text), variables, where)
    if kind == "rio-calc":
        return _rio_calc(str(text), variables, where)
    if kind == "python":
        function = load_function(str(text), trust_code=trust_code, where=where)
        argument: Any = variables["x"] if "x" in variables else dict(variables)
        return np.asarray(function(argument))
    raise UnsupportedExpressionError(
        f"{where} has an expression of format {kind!r} ({text!r}), which predict cannot run.",
        hint="Formats run here: gdal-calc, rio-calc (with snuggs installed), python (with trust_code).",
    )


def _numexpr(text: str, variables: Mapping[str, np.ndarray], where: str) -> np.ndarray:
    import numexpr

    names = set(_IDENTIFIER.findall(text)) - _NUMEXPR_NAMES
    unknown = sorted(n for n in names if n not in variables)
    if unknown:
        raise UnsupportedExpressionError(
            f"{where}: the gdal-calc expression {text!r} uses {', '.join(unknown)}, which are not bands it can read "
            f"({', '.join(sorted(variables))}).",
            hint="Name bands of the input in the expression.",
        )
    try:
        return np.asarray(numexpr.evaluate(text, local_dict={n: variables[n] for n in names}, global_dict={}))
    except (SyntaxError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UnsupportedExpressionError(
            f"{where}: the gdal-calc expression {text!r} cannot be evaluated: {exc}.",
            hint="gdal-calc expressions are arithmetic over band names (numexpr syntax).",
        ) from exc


def _rio_calc(text: str, variables: Mapping[str, np.ndarray], where: str) -> np.ndarray:
    try:
        import snuggs
    except ImportError:
        raise UnsupportedExpressionError(
            f"{where} has a rio-calc expression ({text!r}); it needs the snuggs evaluator, which is not installed.",
            hint="pip install snuggs, or publish the expression as gdal-calc.",
        ) from None
    try:
        return np.asarray(snuggs.eval(text, **variables))
    except Exception as exc:
        raise UnsupportedExpressionError(f"{where}: the rio-calc expression {text!r} fails: {exc}.") from exc


def load_function(entrypoint: str, *, trust_code: bool, where: str) -> Callable[..., Any]:
    """The callable ``pkg.module:function`` (or ``:Class.method``), imported only with ``trust_code``.

    Raises:
        UntrustedCodeError: ``trust_code`` is False.
        UnsupportedExpressionError: the entry point cannot be imported.
    """
    if not trust_code:
        raise UntrustedCodeError(
            f"{where} names the python function {entrypoint!r}; running it imports that code, and trust_code is off.",
            hint="Pass trust_code=True (--trust-code) if you trust the Item's code.",
        )
    module_name, _, attribute = entrypoint.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UnsupportedExpressionError(
            f"{where}: the python function {entrypoint!r} cannot be imported: {exc}.",
            hint="Install the package that provides it.",
        ) from exc
    if not callable(target):
        raise UnsupportedExpressionError(f"{where}: {entrypoint!r} is not callable.")
    return target
