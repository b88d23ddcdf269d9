"""Content-addressed cache of downloaded artifacts, verified while they are written.

Every entry is named by the multihash its Item records (``file:checksum``), under
``<user cache>/mlm-export/artifacts/<multihash>`` (``$MLM_EXPORT_CACHE_DIR`` or the ``cache_dir`` argument override
the directory). Bytes are hashed as they arrive and written as they are hashed into a temporary file of the cache
directory; only a file whose size and checksum both match is renamed (atomically) to its entry, so a reader never
sees a partial or unverified entry and concurrent downloads of the same artifact cannot corrupt it. A mismatch
deletes the temporary file and raises :class:`~mlm_export.errors.ChecksumMismatchError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from mlm_export.errors import ChecksumMismatchError, ConfigurationError, OutputError
from mlm_export.hashing import is_multihash

#: Environment variable naming the artifact cache directory (tests, shared caches).
CACHE_ENV = "MLM_EXPORT_CACHE_DIR"
#: Multihash function code -> hashlib name (the functions ``file:checksum`` uses in practice).
MULTIHASH_FUNCTIONS = {"11": "sha1", "12": "sha256", "13": "sha512", "14": "sha3_512", "16": "sha3_256"}
#: Entries verified by this process: path -> (inode, size, mtime_ns) when verified; a hit with the same stat is not
#: hashed again (``load_model`` verifies the file once more before loading anyway).
_VERIFIED: dict[Path, tuple[int, int, int]] = {}
_VERIFIED_LOCK = threading.Lock()
#: Chunks queued for each of the hashing and writing threads (bounds memory to a few tens of MiB).
_QUEUE_DEPTH = 32


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The artifact cache directory: ``cache_dir``, else ``$MLM_EXPORT_CACHE_DIR``, else the user cache.

    The directory is created when missing.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or None
    if cache_dir is None:
        from platformdirs import user_cache_dir

        cache_dir = Path(user_cache_dir("mlm-export")) / "artifacts"
    directory = Path(cache_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the artifact cache '{directory}': {exc.strerror}.",
            hint=f"Set ${CACHE_ENV} to a writable directory.",
        ) from exc
    return directory


def new_hasher(checksum: str) -> hashlib._Hash:
    """A hashlib object for the function of the multihash ``checksum``.

    Raises:
        ConfigurationError: ``checksum`` is not a multihash of a supported function.
    """
    name = MULTIHASH_FUNCTIONS.get(checksum[:2]) if is_multihash(checksum) else None
    if name is None:
        raise ConfigurationError(
            f"file:checksum {checksum!r} is not a multihash of {', '.join(MULTIHASH_FUNCTIONS.values())}.",
            hint="Re-export the Item: mlm-export records SHA2-256 multihashes (prefix 1220).",
        )
    return hashlib.new(name)


def multihash_of(hasher: hashlib._Hash, checksum_like: str) -> str:
    """The hex multihash of ``hasher``'s digest, with the function code and length of ``checksum_like``."""
    digest = hasher.digest()
    return checksum_like[:2] + f"{len(digest):02x}" + digest.hex()


def cache_entry(checksum: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The path of the cache entry of ``checksum`` (it may not exist).

    Raises:
        ConfigurationError: ``checksum`` is not a supported multihash (it also keeps names inside the cache).
    """
    new_hasher(checksum)
    return default_cache_dir(cache_dir) / checksum


def cached_artifact(checksum: str, size: int | None, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The verified cache entry of ``checksum``, or ``None`` when there is none.

    An entry is re-hashed before it is handed out; one whose size or bytes no longer match (changed on disk) is
    deleted and ``None`` returned, so the caller downloads it again.
    """
    path = cache_entry(checksum, cache_dir)
    try:
        with open(path, "rb") as stream:
            stat = os.fstat(stream.fileno())
            if size is not None and stat.st_size != size:
                raise ValueError
            if _VERIFIED.get(path) == _signature(stat):
                return path
            hasher = new_hasher(checksum)
            hashlib.file_digest(stream, lambda: hasher)
    except FileNotFoundError:
        return None
    except ValueError:
        path.unlink(missing_ok=True)
        return None
    if multihash_of(hasher, checksum) != checksum:
        path.unlink(missing_ok=True)
        return None
    _remember(path, stat)
    return path


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _remember(path: Path, stat: os.stat_result) -> None:
    with _VERIFIED_LOCK:
        _VERIFIED[path] = _signature(stat)


def store_verified(
    chunks: Iterable[bytes | memoryview],
    *,
    checksum: str,
    size: int | None,
    source: str,
    cache_dir: str | os.PathLike[str] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Path:
    """Write ``chunks`` into the cache entry of ``checksum``, hashing while writing; verify, then publish atomically.

    The calling thread receives the chunks while one thread hashes and another writes them (hashlib and file
    writes release the GIL), so receiving, hashing and writing overlap.

    Args:
        chunks: the artifact's bytes, in order (e.g. an HTTP response body).
        checksum: the multihash the Item records; also the entry's name.
        size: the ``file:size`` the Item records; more bytes than this stop the transfer early.
        source: the URL the bytes come from (for messages).
        cache_dir: cache directory override.
        on_chunk: called with the length of each chunk (progress bars).

    Returns:
        The path of the verified entry.

    Raises:
        ChecksumMismatchError: the size or the checksum differ (nothing is left in the cache).
        OutputError: the cache cannot be written.
    """
    target = cache_entry(checksum, cache_dir)
    hasher = new_hasher(checksum)
    try:
        descriptor, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{checksum[:16]}.", suffix=".part")
    except OSError as exc:
        raise _write_error(target, exc) from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb", buffering=0) as stream:
            received = _hash_and_write(chunks, hasher, (stream, target), size, source, on_chunk)
        _check_received(received, multihash_of(hasher, checksum), size, checksum, source)
        try:
            stat = temp.stat()
            os.replace(temp, target)
        except OSError as exc:
            raise _write_error(target, exc) from exc
        _remember(target, stat)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return target


def _hash_and_write(
    chunks: Iterable[bytes | memoryview],
    hasher: hashlib._Hash,
    output: tuple[BinaryIO, Path],
    size: int | None,
    source: str,
    on_chunk: Callable[[int], None] | None,
) -> int:
    """Hand each chunk to a hashing thread and a writing thread; return the number of bytes received.

    The three stages (receive here, hash, write) overlap: hashlib and file writes release the GIL. Measured against
    one thread that hashes and writes 4 MiB blocks, and against download-then-hash, this is the fastest on 2 cores.
    """
    stream, target = output

    def write_all(chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:  # an unbuffered write may be short
            view = view[stream.write(view) :]

    stages = [_Stage(hasher.update), _Stage(write_all)]
    received = 0
    try:
        for chunk in chunks:
            received += len(chunk)
            if size is not None and received > size:
                raise ChecksumMismatchError(
                    f"'{source}' sent more than the {size} bytes its Item records in file:size; transfer stopped.",
                    hint="The remote file differs from the Item: ask its publisher, do not load it.",
                )
            for stage in stages:
                stage.pending.put(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    finally:
        for stage in stages:
            stage.finish()
    for stage in stages:
        if isinstance(stage.failure, OSError):
            raise _write_error(target, stage.failure) from stage.failure
        if stage.failure is not None:
            raise stage.failure
    return received


def _write_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"Cannot write the cache entry '{path}': {exc}.", hint=f"Free space or set ${CACHE_ENV}.")


class _Stage:
    """A thread applying ``consume`` to every chunk put in ``pending`` until ``None``."""

    def __init__(self, consume: Callable[[bytes | memoryview], object]) -> None:
        self.pending: queue.Queue[bytes | memoryview | None] = queue.Queue(_QUEUE_DEPTH)
        self.failure: BaseException | None = None
        self._consume = consume
        self._thread = threading.Thread(target=self._run, name="mlm-export-download-stage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self.pending.get()) is not None:
            if self.failure is not None:
                continue  # drain so the receiver never blocks
            try:
                self._consume(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the receiving thread
                self.failure = exc

    def finish(self) -> None:
        self.pending.put(None)
        self._thread.join()


def _check_received(received: int, actual: str, size: int | None, checksum: str, source: str) -> None:
    if size is not None and received != size:
        raise ChecksumMismatchError(
            f"'{source}' sent {received} bytes but its Item records file:size {size}; the partial file was removed.",
            hint="The transfer was cut or the remote file differs from the Item: try again, then ask its publisher.",
        )
    if actual != checksum:
        raise ChecksumMismatchError(
            f"'{source}' has checksum {actual} but its Item records {checksum}; the downloaded file was removed.",
            hint="The remote file was changed or replaced: do not load it; ask the Item's publisher.",
        )


__all__ = ["CACHE_ENV", "cache_entry", "cached_artifact", "default_cache_dir", "new_hasher", "store_verified"]
