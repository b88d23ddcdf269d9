"""The ``mlm:source_code`` asset: where the code that builds the model lives, pinned, with ``mlm:entrypoint``.

The entrypoint is ``package.module:Class`` (or ``:factory``) of the model's class, or of ``model_class=``. Its
module's file decides the href:

* inside a git work tree with a remote: the raw contents of the file **at the current commit** (``text/x-python``,
  for GitHub, GitLab and Bitbucket remotes; the repository page at that commit otherwise), the remote normalised to
  https without credentials. Uncommitted changes to the file draw a warning and a note in the asset description.
* inside a git work tree without a remote: no asset (a local path is no URL, and could not be published); the
  entrypoint, the commit and the file's path in the repository go to ``mlm:hyperparameters``
  (``source_code.entrypoint``, ``source_code.commit``, ``source_code.path``) and a warning says so.
* an installed package (torchgeo, timm, torchvision, smp...): the project's repository from the package metadata
  (``Project-URL`` / ``Home-page``), ``text/html``, with the installed version in the description. No tag URL is
  guessed.

A class defined in ``__main__`` or a notebook, a lambda or a class defined inside a function has no importable
entrypoint: a warning says so and no asset is written. Git runs through ``subprocess`` with no network access.

.. versionadded:: 0.2
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from mlm_export.errors import ConfigurationError

#: The asset key the MLM README recommends for source code.
SOURCE_CODE_KEY = "mlm:source_code"
#: Roles of the source-code asset (MLM: ``code`` is required with ``mlm:entrypoint``).
SOURCE_CODE_ROLES = ("mlm:source_code", "code", "metadata")
PYTHON_MEDIA_TYPE = "text/x-python"
HTML_MEDIA_TYPE = "text/html"
#: ``Project-URL`` labels that name a code repository, most specific first (compared in lower case).
REPOSITORY_LABELS = ("repository", "source", "source code", "code", "github", "homepage", "home")
_GIT_TIMEOUT_S = 10
_SCP_REMOTE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>[^/].*)$")


@dataclass(frozen=True)
class SourceCode:
    """What the source-code asset says: entrypoint, href, media type and how the href was found."""

    #: None only for code given by URL (``source_code=``) with no entrypoint: the asset then has no
    #: ``mlm:entrypoint`` (MLM requires the ``code`` role with one, not one with the role).
    entrypoint: str | None
    #: None when there is no public URL (a repository without remote): then no asset is written.
    href: str | None
    media_type: str
    description: str
    commit: str | None = None
    package_version: str | None = None
    dirty: bool = False
    #: Path of the file in its repository (when it is in a git work tree).
    path: str | None = None

    def hyperparameters(self) -> dict[str, Any]:
        """``mlm:hyperparameters`` entries for code without a public URL: entrypoint, commit and path."""
        values = {"source_code.entrypoint": self.entrypoint, "source_code.commit": self.commit}
        values["source_code.path"] = self.path
        return {k: v for k, v in values.items() if v is not None}

    def asset_dict(self) -> dict[str, Any]:
        """The STAC asset object (key :data:`SOURCE_CODE_KEY`)."""
        asset = {
            "href": self.href,
            "type": self.media_type,
            "title": f"Source code of {self.entrypoint}" if self.entrypoint else "Source code of the model",
            "description": self.description,
            "roles": list(SOURCE_CODE_ROLES),
            "mlm:entrypoint": self.entrypoint,
        }
        return {k: v for k, v in asset.items() if v is not None}


def entrypoint_of(target: Any) -> str | None:
    """``"pkg.module:Name"`` of a class or function, or None when it cannot be imported by that name."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _model_target(model: Any, model_class: Any) -> Any:
    """The class or factory whose code builds the model (None when only a file is known)."""
    if isinstance(model_class, str):
        import pkgutil

        try:
            return pkgutil.resolve_name(model_class)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(
                f"model_class={model_class!r} cannot be imported ({exc}).",
                hint="Give 'package.module:Class' of an importable module.",
            ) from exc
    if model_class is not None:
        return model_class
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return None  # a file, an ONNX graph, an ExportedProgram: no Python class builds it
    if isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule)):
        return None  # compiled: runs without its source code (its class is TorchScript's or fx's own)
    return type(model)


def describe_source_code(model: Any = None, *, model_class: Any = None) -> SourceCode | None:
    """Find the source code of ``model`` (its class) or of ``model_class``.

    Args:
        model: an in-memory ``nn.Module`` (its class is used); for files, ONNX graphs and compiled modules
            (TorchScript, fx, ``ExportedProgram``) only ``model_class`` speaks.
        model_class: a class or factory, or ``"pkg.module:Class"``; wins over the model's class.

    Returns:
        The asset's content, or None (with a warning) when the code has no importable entrypoint or no file.
    """
    target = _model_target(model, model_class)
    if target is None:
        return None
    entrypoint = entrypoint_of(target)
    if entrypoint is None:
        name = getattr(target, "__qualname__", type(target).__name__)
        warnings.warn(
            f"{name} is defined in __main__, a notebook or a function: it has no importable entrypoint, so the "
            "Item gets no mlm:source_code asset. Move it into a module to record its source code.",
            stacklevel=4,
        )
        return None
    module = sys.modules.get(target.__module__)
    source = _module_file(module)
    if source is None:
        warnings.warn(f"{entrypoint}: its module has no source file; no mlm:source_code asset.", stacklevel=4)
        return None
    in_git = git_source(source, entrypoint)
    if in_git is not None:
        return in_git
    return package_source(source, entrypoint)


def _module_file(module: Any) -> Path | None:
    if module is None:
        return None
    try:
        name = inspect.getsourcefile(module)
    except TypeError:  # built-in module
        return None
    return Path(name).resolve() if name and os.path.isfile(name) else None


def _git(directory: Path, *args: str) -> str | None:
    """Output of ``git -C directory args`` (stripped), or None when git fails or is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def https_remote(url: str) -> str | None:
    """A git remote URL as a public https URL without credentials or ``.git`` (None for local remotes).

    ``git@github.com:o/r.git`` and ``ssh://git@github.com/o/r`` -> ``https://github.com/o/r``.
    """
    url = url.strip()
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ssh", "git", "git+ssh") and parsed.hostname:
        host, path = parsed.hostname, parsed.path
    elif not parsed.scheme and (match := _SCP_REMOTE.match(url)) and "." in match["host"]:
        host, path = match["host"], "/" + match["path"]
    else:
        return None  # a local path or file:// remote is not a public URL
    path = re.sub(r"\.git/?$", "", path).rstrip("/")
    return urlunparse(("https", host, path, "", "", ""))


def raw_file_url(repository: str, commit: str, path: str) -> str | None:
    """The raw-contents URL of ``path`` at ``commit`` for GitHub, GitLab and Bitbucket (None for other hosts)."""
    parsed = urlparse(repository)
    project = parsed.path.strip("/")
    if parsed.hostname == "github.com":
        return f"https://raw.githubusercontent.com/{project}/{commit}/{path}"
    if parsed.hostname == "gitlab.com":
        return f"{repository}/-/raw/{commit}/{path}"
    if parsed.hostname == "bitbucket.org":
        return f"{repository}/raw/{commit}/{path}"
    return None


def _in_work_tree(directory: Path) -> bool:
    """Whether git could find a repository from ``directory``: a ``.git`` there or above (or ``GIT_DIR`` set).

    Saves the git processes for files in no repository (installed packages, plain folders).
    """
    if os.environ.get("GIT_DIR"):
        return True
    return any(os.path.exists(os.path.join(parent, ".git")) for parent in (directory, *directory.parents))


def _first_remote_url(directory: Path) -> str | None:
    """The URL of the remote ``git remote`` lists first (names sorted), or None when there is none."""
    lines = (_git(directory, "config", "--get-regexp", r"^remote\..*\.url$") or "").splitlines()
    remotes = {}
    for line in lines:
        key, _, url = line.partition(" ")
        remotes.setdefault(key.removeprefix("remote.").removesuffix(".url"), url)
    return remotes[min(remotes)] if remotes else None


def git_source(source: Path, entrypoint: str) -> SourceCode | None:
    """The source-code asset of ``source`` when it lies in a git work tree (None otherwise).

    Three git processes at most: the top level and commit, the file's status (ignored, untracked, changed) and
    the remotes' URLs.
    """
    directory = source.parent
    if not _in_work_tree(directory):
        return None
    found = _git(directory, "rev-parse", "--show-toplevel", "HEAD")
    if found is None or len(found.splitlines()) != 2:
        return None  # not in a work tree, or a repository without any commit
    top, commit = found.splitlines()
    status = _git(directory, "status", "--porcelain", "--ignored", "--", str(source))
    if status is None or status.startswith("!!"):
        return None  # an ignored file in a work tree (a virtualenv inside a project)
    relative = source.relative_to(Path(top).resolve()).as_posix()
    tracked, dirty = not status.startswith("??"), bool(status)
    notes = [f"{relative} at commit {commit}"]
    if dirty:
        change = "is not committed" if not tracked else "has uncommitted changes"
        notes.append(f"Warning: the file {change}; the code at that commit differs from the code that was run")
        warnings.warn(
            f"{relative} {change} in {top}: the mlm:source_code asset points at commit {commit[:12]}, which "
            "differs from the code that built this model. Commit it and export again.",
            stacklevel=5,
        )
    remote_url = _first_remote_url(directory)
    repository = https_remote(remote_url) if remote_url else None
    if repository is None:
        warnings.warn(
            f"The git repository {top} has no public remote: the Item gets no mlm:source_code asset (a local path "
            f"is no URL); entrypoint {entrypoint} and commit {commit[:12]} go to mlm:hyperparameters "
            "(source_code.*). Add a remote (git remote add origin URL) to publish the code.",
            stacklevel=5,
        )
        return SourceCode(
            entrypoint, None, PYTHON_MEDIA_TYPE, ". ".join(notes) + ".", commit, dirty=dirty, path=relative
        )
    raw = raw_file_url(repository, commit, relative)
    href, media_type = (raw, PYTHON_MEDIA_TYPE) if raw else (f"{repository}/tree/{commit}", HTML_MEDIA_TYPE)
    notes.insert(0, f"Repository {repository}")
    return SourceCode(entrypoint, href, media_type, ". ".join(notes) + ".", commit, dirty=dirty, path=relative)


_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def given_source_code(value: Any, model: Any = None, *, model_class: Any = None) -> SourceCode:
    """The source-code asset of ``export_item(source_code=...)``: a URL given by the publisher (no detection runs).

    ``value`` is the http(s) URL of the code (a repository at a commit, or one file), or a mapping
    ``{"href": URL, "entrypoint": "pkg.module:Class"}``. The entrypoint defaults to ``model_class``'s (or the
    in-memory model's class, as :func:`describe_source_code` finds it); the media
    type is ``text/x-python`` for a ``.py`` file, else ``text/html``.

    Raises:
        ConfigurationError: not an http(s) URL, or a malformed entrypoint.
    """
    href, entrypoint = (value.get("href"), value.get("entrypoint")) if isinstance(value, Mapping) else (value, None)
    parsed = urlparse(href) if isinstance(href, str) and not any(c.isspace() for c in href) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigurationError(
            f"source_code={href!r} is not an http(s) URL.",
            hint="Give the URL of the code, e.g. https://github.com/org/repo/tree/<commit>/path.",
        )
    if entrypoint is not None and not (isinstance(entrypoint, str) and _ENTRYPOINT.match(entrypoint)):
        raise ConfigurationError(
            f"source_code entrypoint {entrypoint!r} is not 'package.module:Class'.",
            hint="Write the entrypoint as package.module:Class (or :factory).",
        )
    if entrypoint is None and isinstance(model_class, str):
        entrypoint = model_class  # as given (``pkg.mod:Class`` or ``pkg.mod.Class``), as mlm:hyperparameters has it
    elif entrypoint is None:
        target = _model_target(model, model_class)
        entrypoint = entrypoint_of(target) if target is not None else None
    python = parsed.path.endswith(".py")
    return SourceCode(entrypoint, href, PYTHON_MEDIA_TYPE if python else HTML_MEDIA_TYPE, "Given by the publisher.")


def entrypoint_of_item(document: Mapping[str, Any]) -> str | None:
    """The recorded entrypoint of an Item dict (None when there is none).

    The ``mlm:entrypoint`` of the ``mlm:source_code`` asset, else of the first asset that has one (Items written
    by other tools may use another key), else ``source_code.entrypoint`` in ``mlm:hyperparameters`` (code without
    a public URL). Importing it runs code: callers gate it (``trust_code``).
    """
    assets = document.get("assets") or {}
    own = assets.get(SOURCE_CODE_KEY)
    for asset in ([own] if own is not None else []) + list(assets.values()):
        if isinstance(asset, Mapping) and isinstance(asset.get("mlm:entrypoint"), str):
            return asset["mlm:entrypoint"]
    hyper = (document.get("properties") or {}).get("mlm:hyperparameters")
    value = hyper.get("source_code.entrypoint") if isinstance(hyper, Mapping) else None
    return value if isinstance(value, str) else None


def _normalised(name: str) -> str:
    """A distribution or file-name stem as the wheel spec spells it: runs of ``-_.`` as ``_``, lower case."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _import_root(source: Path, module_name: str) -> Path | None:
    """The directory ``module_name`` is imported from (``root/pkg/mod.py``), or None when the file does not fit."""
    parts = module_name.split(".")
    names = parts if source.stem == "__init__" else parts[:-1]
    directory = source.parent
    for name in reversed(names):
        if directory.name != name:
            return None
        directory = directory.parent
    return directory if source.stem in ("__init__", parts[-1]) else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _lists(info: Path, top: str, relative: str, *, named: bool) -> bool:
    """Whether the ``*.dist-info`` / ``*.egg-info`` directory ``info`` installed the file ``relative``.

    ``top_level.txt`` (where there is one) rules a distribution out without reading its ``RECORD``; an egg-info
    (no ``RECORD``) counts when its name or ``top_level.txt`` names the module.
    """
    top_level = _read(info / "top_level.txt").split()
    if top_level and top not in top_level:
        return False
    record = _read(info / "RECORD")
    if record:
        return f"\n{relative}," in f"\n{record}"
    return named or top in top_level


def _distribution_in(directory: Path, top: str, relative: str) -> importlib.metadata.Distribution | None:
    """The distribution in ``directory`` (a site dir, a ``--target`` dir) that installed ``relative``.

    Its own-named candidates (``torchvision-0.20.dist-info`` for ``torchvision``) are read first; then the others,
    lazily, up to the first that lists the file.
    """
    try:
        infos = sorted(e.name for e in os.scandir(directory) if e.name.endswith((".dist-info", ".egg-info")))
    except OSError:
        return None
    key = _normalised(top)
    stems = {n: n.removesuffix(".dist-info").removesuffix(".egg-info").split("-", 1)[0] for n in infos}
    named = [n for n in infos if _normalised(stems[n]) == key]
    for name in named + [n for n in infos if n not in named]:
        if _lists(directory / name, top, relative, named=name in named):
            return importlib.metadata.Distribution.at(directory / name)
    return None


def _within(source: Path, location: str | os.PathLike[str]) -> bool:
    path = Path(location).resolve()
    return source == path or path in source.parents


def _editable_finder_distribution(top: str, source: Path) -> importlib.metadata.Distribution | None:
    """The editable install (setuptools' ``__editable___<name>_<version>_finder``) whose ``MAPPING`` holds ``source``.

    The finder module is imported by its ``.pth`` at start-up, so its mapping is read from ``sys.modules``.
    """
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)
        if not (name.startswith("__editable__") and isinstance(mapping, dict)):
            continue
        location = mapping.get(top)
        finder_file = getattr(module, "__file__", None)
        if not isinstance(location, str) or not finder_file or not _within(source, location):
            continue
        site_dir, stem = Path(finder_file).parent, name.removeprefix("__editable___").removesuffix("_finder")
        for info in sorted(site_dir.glob("*.dist-info")):
            if _normalised(info.name.removesuffix(".dist-info")) == _normalised(stem):
                return importlib.metadata.Distribution.at(info)
        return _distribution_in(site_dir, top, Path(finder_file).name)
    return None


@functools.cache
def _pth_paths() -> dict[Path, tuple[Path, str]]:
    """Directories that ``*.pth`` files of the site dirs put on ``sys.path`` -> (site dir, ``.pth`` name)."""
    import site
    import sysconfig

    site_dirs = [*site.getsitepackages(), site.getusersitepackages()]
    site_dirs += [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    found: dict[Path, tuple[Path, str]] = {}
    for site_dir in dict.fromkeys(Path(d) for d in site_dirs):
        for pth in sorted(site_dir.glob("*.pth")) if site_dir.is_dir() else ():
            for line in _read(pth).splitlines():
                if line.strip() and not line.startswith(("#", "import ", "import\t")):
                    found.setdefault(Path(site_dir, line.strip()).resolve(), (site_dir, pth.name))
    return found


@functools.cache
def _distribution_of(module_name: str, source: Path) -> importlib.metadata.Distribution | None:
    """The installed distribution that provides ``module_name`` (whose file is ``source``), found from the file.

    Never reads every installed distribution: the directory the module is imported from holds its
    ``*.dist-info`` (site-packages, a ``pip install --target`` dir); an editable install is found through its
    finder's ``MAPPING`` (setuptools) or the ``.pth`` file that puts its directory on ``sys.path``. A module in a
    plain folder costs one directory listing.
    """
    top = module_name.split(".", 1)[0]
    root = _import_root(source, module_name)
    if root is None:
        return None
    found = _editable_finder_distribution(top, source)  # before the project's own (maybe stale) egg-info
    if found is None:
        found = _distribution_in(root, top, source.relative_to(root).as_posix())
    if found is None and root in _pth_paths():
        site_dir, pth = _pth_paths()[root]
        found = _distribution_in(site_dir, top, pth)
    return found


def repository_url(distribution: importlib.metadata.Distribution) -> str | None:
    """The code repository a package's metadata names (``Project-URL`` by label, then ``Home-page``)."""
    metadata = distribution.metadata
    labelled: dict[str, str] = {}
    for entry in metadata.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        labelled.setdefault(label.strip().lower(), url.strip())
    home = metadata.get("Home-page")
    if home:
        labelled.setdefault("home", home.strip())
    for label in REPOSITORY_LABELS:
        url = labelled.get(label)
        if url and urlparse(url).scheme == "https":
            return url
    return None


def package_source(source: Path, entrypoint: str) -> SourceCode | None:
    """The source-code asset of a class from an installed package (None, with a warning, when it names no URL)."""
    module_name = entrypoint.split(":", 1)[0]
    distribution = _distribution_of(module_name, source)
    url = repository_url(distribution) if distribution is not None else None
    if distribution is None or url is None:
        warnings.warn(
            f"{entrypoint} comes from {source}, which is neither in a git work tree nor an installed package "
            "naming its repository: the Item gets no mlm:source_code asset.",
            stacklevel=5,
        )
        return None
    name, version = distribution.metadata["Name"], distribution.version
    description = f"Installed package {name} {version}; {entrypoint} is defined in module {module_name}."
    return SourceCode(entrypoint, url, HTML_MEDIA_TYPE, description, package_version=version)


__all__ = [
    "SOURCE_CODE_KEY",
    "SOURCE_CODE_ROLES",
    "SourceCode",
    "describe_source_code",
    "entrypoint_of",
    "entrypoint_of_item",
    "git_source",
    "given_source_code",
    "https_remote",
    "package_source",
    "raw_file_url",
    "repository_url",
]
