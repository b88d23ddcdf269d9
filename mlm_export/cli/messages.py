"""How the ``mlm-export`` command line writes what the library says: errors, hints, warnings and notes.

The library's messages name its Python arguments (``model_class=``, ``trust_pickle=True``), often with the CLI
spelling beside them (``href_base= (--href-base)``). :func:`cli_text` is the one formatter that writes them for the
command line: each Python argument becomes the flag that sets it (looked up in the CLI's own parser), a value keeps a
space after its flag, and a flag said twice in a row (``--input-shape or --input-shape``) is said once.
:func:`route_warnings` sends every Python warning and library log record of a CLI process through it, as
``warning: ...`` (or ``note: ...``) lines on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

#: Python argument (and literal) -> flag, where the flag's own name does not say it (the parser gives the rest).
ALIASES: dict[tuple[str, str | None], str] = {
    ("example_input", None): "--input-shape",
    ("start_datetime", None): "--start",
    ("end_datetime", None): "--end",
    ("version", None): "--version",
    ("publications", None): "--publication",
    ("links", None): "--link",
    ("headers", None): "--header",
    ("asset_key", None): "--asset",
    ("verify", "False"): "--no-verify",
    ("probe_dynamic", "False"): "--no-probe",
    ("validate", "False"): "--no-validate",
    ("check_files", "False"): "--no-check-files",
    ("progress", "False"): "--no-progress",
}
#: A Python argument as the library writes it: ``name=`` with a literal, a quoted, bracketed or numeric value.
_VALUE = r"(?:True|False|None|'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\{[^}]*\}|-?\d[\w.]*)"
_BEFORE = r"(?<![\w.$'\"-])"
_MENTION = rf"{_BEFORE}(?P<name>[a-z][a-z0-9_]*)=(?P<value>{_VALUE})?"
#: Python arguments followed by their CLI spelling in parentheses: ``href_base= (--href-base)``, ``(CLI: --header)``.
_WITH_FLAG = re.compile(
    rf"(?:{_BEFORE}[a-z][a-z0-9_]*=(?:{_VALUE})?(?:\s*/\s*|\s+or\s+))*{_MENTION}\s*\((?:CLI:\s*)?(?P<flag>--[^()]*)\)"
)
_ONE = re.compile(_MENTION)
_FLAG = r"--[a-z][a-z0-9-]*"
_REPEATED = re.compile(rf"(?P<f>{_FLAG})(?:\s*/\s*|,\s*|\s+or\s+|\s+and\s+)(?P=f)(?![\w-])")
_ECHOED = re.compile(rf"(?P<f>{_FLAG}) \((?P=f)\)")
#: Flags glued to what follows them (``--model-class'x'``, ``--bbox[1``): what :func:`cli_text` never writes.
GLUED = re.compile(rf"{_FLAG}['\"\[(]")


@functools.lru_cache(maxsize=1)
def python_arguments() -> dict[tuple[str, str | None], str]:
    """(argument name, literal or None) -> CLI flag, from every option of ``mlm-export``'s parser plus ALIASES."""
    from mlm_export.cli import build_parser

    flags: dict[tuple[str, str | None], str] = {}
    for action in _actions(build_parser()):
        long = [s for s in action.option_strings if s.startswith("--")]
        if not long or action.dest in (argparse.SUPPRESS, "help"):
            continue
        flag = next((s for s in long if s == "--" + action.dest.replace("_", "-")), long[0])
        if action.nargs == 0 and isinstance(action.const, bool):
            flags.setdefault((action.dest, str(action.const)), flag)
        flags.setdefault((action.dest, None), flag)
    return {**flags, **ALIASES}


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:  # argparse offers no public walk of its options
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _actions(sub)
        else:
            yield action


def _flag_of(name: str, value: str | None) -> tuple[str | None, str | None]:
    """The flag of argument ``name`` (given ``value``), and the value still to write after it."""
    table = python_arguments()
    if value in ("True", "False", "None") and (name, value) in table:
        return table[name, value], None
    if (name, None) in table and value not in ("True", "False", "None"):
        return table[name, None], value
    return None, None


def _mention(match: re.Match[str]) -> str:
    flag, value = _flag_of(match["name"], match["value"])
    if flag is None:
        return match[0]
    return f"{flag} {value}" if value else flag


def _given_flag(match: re.Match[str]) -> str:
    """``py= (--flag ARG)`` -> ``--flag ARG``; ``py= (--flag, more)`` -> ``--flag (more)``."""
    flag, sep, rest = match["flag"].partition(", ")
    return f"{flag.strip()} ({rest.strip()})" if sep else flag.strip()


def cli_text(text: str) -> str:
    """``text`` as the command line says it: Python arguments written as flags, each flag once, never glued."""
    text = _WITH_FLAG.sub(_given_flag, text)
    text = _ONE.sub(_mention, text)
    previous = None
    while previous != text:
        previous = text
        text = _ECHOED.sub(r"\g<f>", _REPEATED.sub(r"\g<f>", text))
    return text


def python_spellings(text: str) -> list[str]:
    """The Python spellings (``tasks=``, ``trust_pickle=True``) of CLI-settable arguments left in ``text``."""
    return [m[0] for m in _ONE.finditer(text) if _flag_of(m["name"], m["value"])[0] is not None]


def repeated_flags(text: str) -> list[str]:
    """Flags said twice in a row (``--x or --x``, ``--x (--x)``) in ``text``."""
    return [m[0] for m in (*_REPEATED.finditer(text), *_ECHOED.finditer(text))]


# --- warnings and notes --------------------------------------------------------------------------------------------


def _line(kind: str, text: str, stream: TextIO | None = None) -> None:
    with contextlib.suppress(Exception):  # a closed stderr must not turn a warning into a crash
        print(f"{kind}: {cli_text(text)}", file=stream or sys.stderr)


class _LogLines(logging.Handler):
    """The library's log records as ``warning: ...`` lines (``note: ...`` for a model's notes)."""

    def emit(self, record: logging.LogRecord) -> None:
        _line("note" if getattr(record, "mlm_note", False) else "warning", record.getMessage())


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """``warnings.showwarning`` of a CLI process: the message alone, as a ``warning:`` line (no file:line)."""
    _line("warning", str(message), file)


@contextlib.contextmanager
def route_warnings() -> Iterator[None]:
    """While the CLI runs: Python warnings and the library's log records as one ``warning: ...`` line each."""
    library = logging.getLogger("mlm_export")
    handler = _LogLines(logging.WARNING)
    library.addHandler(handler)
    propagate, library.propagate = library.propagate, False
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        yield
    finally:
        warnings.showwarning = shown
        library.removeHandler(handler)
        library.propagate = propagate


def print_note(text: str) -> None:
    """A note on what was measured (the same words whichever command measured it), on stdout."""
    _line("note", text, sys.stdout)


__all__ = ["cli_text", "print_note", "python_arguments", "python_spellings", "repeated_flags", "route_warnings"]
