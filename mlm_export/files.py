"""Every file mlm-export writes goes through here: staged, published without replacing, cleaned up if it fails.

Rules, once for the adapters, the Item writer, the catalog and the schema cache:

* A file is first written under a temporary name in the directory it is published to (or in a hidden staging
  directory there), so nothing half-written is ever visible under its real name.
* It is published by ``os.link`` to its real name, which fails instead of replacing a file that is already there:
  an artifact an earlier Item points to is never replaced, even by a concurrent export. Only ``overwrite=True``
  replaces, with ``os.replace``, at the very end.
* Temporary names carry the host and process id (``.mlm-export-<host>-<pid>-...``). Temporaries of a process that
  no longer runs, or older than :data:`STALE_AFTER_S`, are removed by the next write into the same directory; a
  staging directory's files that were already published (same inode) are removed with it, since the run that
  published them never returned an Item.
* Cleanup removes only files this process created. Files get the mode an ordinary file gets (``0o666`` less the
  umask), not ``mkstemp``'s ``0o600``.
* ``OSError`` and the libraries' own write errors become :class:`~mlm_export.errors.OutputError` naming the path
  (and saying "no space left on device" when that is the cause).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from mlm_export.description import slugify
from mlm_export.errors import OutputError, OutputExistsError

#: Marker in the name of every temporary file or directory mlm-export creates.
TEMP_MARK = ".mlm-export-"
#: Prefix of a staging directory (inside the directory its files are published to).
STAGE_PREFIX = f"{TEMP_MARK}stage-"
#: Temporaries of a live process are left alone unless older than this (a pid may be reused).
STALE_AFTER_S = 24 * 3600
_OWNER = re.compile(r"^\.(?:[^/]*?\.)?mlm-export-(?:stage-)?(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-")
_NO_SPACE_TEXT = ("no space left", "storagefull", "disk quota exceeded", "file write failed")
#: Below this many free bytes a failed write is put down to a full disk.
_NEARLY_FULL = 1 << 20
_LINK_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def default_artifact_dir() -> Path:
    """The directory in-memory models' artifacts are written to when no ``artifact_dir`` is given."""
    return Path.cwd() / "artifacts"


def artifact_name(model_name: str, suffix: str) -> str:
    """The one file-name rule for a written artifact: the model name's slug, case kept, plus the suffix."""
    return f"{slugify(model_name)}{suffix}"


def resolve_output(path: str | os.PathLike[str]) -> Path:
    """The absolute path with symlinks resolved: files are written where their hrefs are computed for."""
    return Path(os.path.realpath(os.path.abspath(path)))


def file_mode() -> int:
    """The mode of a new ordinary file under the current umask (``0o666 & ~umask``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def exists_error(path: Path, *, what: str = "Artifact", flag: str = "overwrite=True") -> OutputExistsError:
    """The one "already exists" error: nothing is replaced unless the caller says so."""
    return OutputExistsError(
        f"{what} '{path}' already exists; an earlier item may point to it.",
        hint=f"Pass {flag} to replace it, or choose another directory.",
    )


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (an ``OSError`` or a library's wrapper of one) says the disk or quota is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _NO_SPACE_TEXT) or "os { code: 28" in text


def write_failed_for_space(exc: BaseException, path: Path) -> bool:
    """Whether writing ``path`` failed because its file system is full (by the error, or by the free space left)."""
    if is_no_space(exc):
        return True
    try:
        return shutil.disk_usage(path.parent).free < _NEARLY_FULL
    except OSError:
        return False


def write_error(path: Path, exc: BaseException) -> OutputError:
    """An :class:`OutputError` naming ``path`` for an error raised while writing it."""
    if write_failed_for_space(exc, path):
        return OutputError(
            f"Cannot write '{path}': no space left on device.",
            hint="Free some space on that file system, or write to another directory.",
        )
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
    return OutputError(f"Cannot write '{path}': {reason}.", hint="Check the directory's permissions and free space.")


def _owner_tag() -> str:
    host = re.sub(r"[^A-Za-z0-9_]+", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file for ``name``: hidden, marked, owned by this host and process."""
    return f".{name}{TEMP_MARK}{_owner_tag()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path, *, now: float | None = None) -> bool:
    """Whether ``path`` is a temporary of a process that no longer runs on this host, or an old one."""
    match = _OWNER.match(path.name)
    if match is None:
        return False
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    host, pid = match.group("host"), int(match.group("pid"))
    return host == _owner_tag().rsplit("-", 1)[0] and pid != os.getpid() and not _process_alive(pid)


def remove_stale(directory: Path) -> list[Path]:
    """Remove the stale temporaries and staging directories in ``directory``; return what was removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in directory.iterdir() if TEMP_MARK in p.name]
    except OSError:
        return removed
    for path in candidates:
        if not is_stale(path):
            continue
        if path.is_dir() and not path.is_symlink():
            _unpublish(path, directory)
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def _unpublish(stage: Path, directory: Path) -> None:
    """Remove files a killed run published from ``stage`` (the same inode under the same name)."""
    for staged in stage.iterdir():
        final = directory / staged.name
        with contextlib.suppress(OSError):
            if final.exists() and os.path.samefile(staged, final):
                final.unlink()


def _claim(source: Path, final: Path) -> None:
    """Give ``source``'s content the name ``final`` without ever replacing a file there (FileExistsError)."""
    try:
        os.link(source, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _LINK_UNSUPPORTED:
            raise
        # No hard links here (some network/FUSE file systems): claim the name exclusively, then move onto it.
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(source, final)


def publish_file(source: Path, final: Path, *, overwrite: bool) -> None:
    """Publish the finished file ``source`` as ``final`` (same file system); replace only when ``overwrite``.

    Raises:
        OutputExistsError: ``final`` exists and ``overwrite`` is False.
        OutputError: the file system refused.
    """
    try:
        if overwrite:
            os.replace(source, final)
            return
        _claim(source, final)
    except FileExistsError as exc:
        raise exists_error(final) from exc
    except OSError as exc:
        raise write_error(final, exc) from exc


def atomic_write(
    target: str | os.PathLike[str], write: Callable[[Path], None], *, overwrite: bool = False, what: str = "Output"
) -> Path:
    """Write a file through ``write(temp_path)`` and publish it as ``target`` (see :func:`publish_file`).

    ``write`` may raise ``OSError`` or a library's write error; either becomes :class:`OutputError` naming
    ``target``. The temporary is removed whatever happens; ``target`` is untouched unless the write succeeded.

    Raises:
        OutputExistsError: ``target`` exists and ``overwrite`` is False.
        OutputError: the directory is missing or not writable, or the disk is full.
    """
    path = resolve_output(target)
    if path.is_dir():
        raise OutputError(f"{what} '{target}' is a directory.", hint="Give a file name.")
    if path.exists() and not overwrite:
        raise exists_error(path, what=what)
    if not path.parent.is_dir():
        raise OutputError(f"{what} directory '{path.parent}' does not exist.", hint="Create it first.")
    remove_stale(path.parent)
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
        os.close(handle)
    except OSError as exc:
        raise write_error(path, exc) from exc
    temp = Path(name)
    try:
        with terminating_cleanly():
            try:
                write(temp)
                os.chmod(temp, path.stat().st_mode & 0o777 if path.exists() else file_mode())
            except OutputError:
                raise
            except (OSError, RuntimeError, ValueError) as exc:
                raise write_error(path, exc) from exc
            publish_file(temp, path, overwrite=overwrite)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_text_atomic(target: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``target`` with :func:`atomic_write`."""
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"), overwrite=overwrite)


class Staging:
    """A hidden staging directory inside ``directory`` for files that are published together (or not at all).

    The directory is created on first use of :attr:`path`, so a run that stages nothing writes nothing. Use it as a
    context manager: leaving the block removes the staging directory, and, if the block raised, every file
    :meth:`publish` already published and the artifact directory itself when this run created it.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = resolve_output(directory)
        self._path: Path | None = None
        self._created: list[Path] = []
        self._published: list[tuple[Path, Path]] = []

    @property
    def path(self) -> Path:
        """The staging directory (created now if needed).

        Raises:
            OutputError: the artifact directory cannot be created or written.
        """
        if self._path is None:
            try:
                missing = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
                self.directory.mkdir(parents=True, exist_ok=True)
                self._created = missing
                remove_stale(self.directory)
                self._path = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{_owner_tag()}-", dir=self.directory))
            except OSError as exc:
                raise OutputError(
                    f"Cannot write into the artifact directory '{self.directory}': {exc.strerror or exc}.",
                    hint="Pass an artifact_dir you can write to.",
                ) from exc
        return self._path

    @property
    def used(self) -> bool:
        """Whether anything was staged."""
        return self._path is not None

    def final_name(self, name: str, *, overwrite: bool, renamable: bool) -> str:
        """The name ``name`` will be published under: itself, or ``<base>-N<suffixes>`` when it is taken.

        Raises:
            OutputExistsError: ``name`` is taken, ``overwrite`` is False and the file cannot be renamed.
        """
        if overwrite or not (self.directory / name).exists():
            return name
        if not renamable:
            raise exists_error(self.directory / name)
        base, dot, rest = name.partition(".")
        for number in range(2, 10_000):
            candidate = f"{base}-{number}{dot}{rest}"
            if not (self.directory / candidate).exists():
                return candidate
        raise exists_error(self.directory / name)

    def publish(self, names: Sequence[str], *, overwrite: bool) -> list[Path]:
        """Publish the staged files ``names`` in order (side files first, the model file last).

        Raises:
            OutputExistsError: a name is taken and ``overwrite`` is False.
            OutputError: the file system refused.
        """
        finals = []
        for name in names:
            staged, final = self.path / name, self.directory / name
            if overwrite:
                # Keep the staged link until the end, so that a killed run's files are recognised as its own.
                temp = self.path / f"{TEMP_MARK}replace-{name}"
                os.link(staged, temp)
                publish_file(temp, final, overwrite=True)
            else:
                publish_file(staged, final, overwrite=False)
            self._published.append((staged, final))
            finals.append(final)
        return finals

    def close(self, *, failed: bool) -> None:
        """Remove the staging directory; after a failure also what this run published or created."""
        if failed:
            for staged, final in reversed(self._published):
                with contextlib.suppress(OSError):
                    if os.path.samefile(staged, final):
                        final.unlink()
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
        if failed:
            for directory in self._created:
                with contextlib.suppress(OSError):
                    directory.rmdir()

    def __enter__(self) -> Staging:
        # A killed run's temporaries and half-published files go first, so that they never block this run.
        if self.directory.is_dir():
            remove_stale(self.directory)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close(failed=kind is not None)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def terminating_cleanly() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C (``SystemExit(143)``) so cleanup runs; only where SIGTERM is the default."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
