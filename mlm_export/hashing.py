"""Streamed SHA2-256 multihash (``file:checksum``) and size (``file:size``) of model files."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from mlm_export.errors import ArtifactNotFoundError, SourceError

#: Multihash prefix of SHA2-256: function code 0x12, digest length 0x20 (32 bytes).
SHA256_MULTIHASH_PREFIX = "1220"
#: Read buffer: 1 MiB fits the CPU cache and keeps syscalls rare (measured faster than 8 MiB and 256 KiB).
BUFFER_SIZE = 1024 * 1024
#: Files larger than this get a progress bar when stderr is a terminal.
PROGRESS_THRESHOLD = 100 * 1024 * 1024

_KNOWN_MULTIHASH = {"12": 32, "13": 64, "11": 20, "16": 32, "14": 64}
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class FileDigest:
    """Size and multihash of one file."""

    path: Path
    size: int
    checksum: str


def multihash_sha256(digest: bytes) -> str:
    """Return the hex multihash of a raw SHA2-256 digest."""
    return SHA256_MULTIHASH_PREFIX + digest.hex()


def is_multihash(checksum: str) -> bool:
    """Whether ``checksum`` is a lowercase hex multihash of a known function with a matching digest length."""
    if not _HEX.match(checksum) or len(checksum) < 4:
        return False
    code, length = checksum[:2], int(checksum[2:4], 16)
    expected = _KNOWN_MULTIHASH.get(code)
    return expected == length and len(checksum) == 4 + 2 * length


def hash_file(path: str | os.PathLike[str], *, progress: bool | None = None) -> FileDigest:
    """Hash one file in a stream of large reads.

    Args:
        path: the file.
        progress: show a progress bar; ``None`` shows one for files over 100 MB when stderr is a terminal.

    Raises:
        ArtifactNotFoundError: the file does not exist.
        SourceError: the path is not a regular file or cannot be read.
    """
    file_path = Path(path)
    if not file_path.exists():
        raise ArtifactNotFoundError(f"Cannot hash '{file_path}': no such file.", hint="Check the path.")
    if not file_path.is_file():
        raise SourceError(f"Cannot hash '{file_path}': it is not a regular file.", hint="Pass a file, not a directory.")
    before, started = _digest_key(file_path), time.time_ns()
    known = cached_digest(file_path, key=before)
    if known is not None:
        return FileDigest(file_path, known.size, known.checksum)
    size = file_path.stat().st_size
    show = progress if progress is not None else (size > PROGRESS_THRESHOLD and sys.stderr.isatty())
    digest = hashlib.sha256()
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    try:
        with open(file_path, "rb", buffering=0) as stream:
            bar = _progress_bar(size, file_path.name) if show else None
            try:
                while True:
                    count = stream.readinto(buffer)
                    if not count:
                        break
                    digest.update(view[:count])
                    if bar is not None:
                        bar.update(count)
            finally:
                if bar is not None:
                    bar.close()
    except OSError as exc:
        raise SourceError(f"Cannot read '{file_path}' to hash it: {exc.strerror}.", hint="Check permissions.") from exc
    result = FileDigest(file_path, size, multihash_sha256(digest.digest()))
    _keep_digest(before, started, result)
    return result


def _progress_bar(total: int, name: str):  # noqa: ANN202 - tqdm is optional at type-check time
    """A bar on stderr sized to the terminal ($COLUMNS/$LINES, else its size, else 80 x 24).

    tqdm alone draws nothing on a terminal that reports a size of 0 x 0 (a fresh pseudo-terminal, some IDE consoles).
    """
    import shutil

    from tqdm import tqdm

    size = shutil.get_terminal_size()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {name}", leave=False,
                ncols=size.columns, nrows=size.lines)  # fmt: skip


#: What a background hash runs in a child interpreter: the digest's hex and the number of bytes read.
_CHILD_HASH = """import hashlib, sys
digest, buffer, count = hashlib.sha256(), bytearray(1 << 20), 0
view = memoryview(buffer)
with open(sys.argv[1], "rb", buffering=0) as stream:
    while read := stream.readinto(buffer):
        digest.update(view[:read])
        count += read
sys.stdout.write(f"{count} {digest.hexdigest()}")
"""


def _hash_in_child(path: str, size: int) -> FileDigest | None:
    """Hash ``path`` in a child interpreter (``-I -S``: stdlib only); None when it cannot (then hash here).

    A hashing thread needs the GIL back after every 1 MiB read and digest update; while the main thread imports
    torch (pure Python for a second), each handover waits up to the switch interval (5 ms), which measured 2.5 s
    for 1 GiB instead of 0.6 s. A child process shares no GIL: its start costs ~20 ms on the other core.
    """
    if not sys.executable:
        return None
    try:
        done = subprocess.run(  # our own interpreter and code; the path is an argument
            [sys.executable, "-I", "-S", "-c", _CHILD_HASH, path], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    count, _, hexdigest = done.stdout.partition(" ")
    if done.returncode != 0 or count != str(size) or len(hexdigest) != 64:
        return None  # unreadable, changed meanwhile: hash_file reports it (typed errors) or hashes what is there
    return FileDigest(Path(path), size, SHA256_MULTIHASH_PREFIX + hexdigest)


#: Hashes started early (before heavy imports), by resolved path: (size, mtime_ns, future).
_BACKGROUND: dict[str, tuple[int, int, Future[FileDigest]]] = {}
_BACKGROUND_LOCK = threading.Lock()


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    """(resolved path, size, mtime_ns) of a regular file, or None: what a hash in flight is checked against."""
    key = _digest_key(path)
    return None if key is None else (key[0], key[1][0], key[1][1])


def start_background(path: str | os.PathLike[str], *, progress: bool | None = None) -> Future[FileDigest] | None:
    """Start hashing ``path`` in the background now (before torch/onnx/pystac are imported); None if not a file.

    A daemon thread waits for a child interpreter that hashes the file (:func:`_hash_in_child`), or hashes it
    itself when a progress bar is shown or the child fails. :func:`take_background` hands the running hash to
    whoever needs it (``export_item``), so a file is read once.
    """
    key = _stat_key(Path(path))
    if key is None:
        return None
    with _BACKGROUND_LOCK:
        running = _BACKGROUND.get(key[0])
    if running is not None and running[:2] == key[1:]:
        return running[2]  # already started (the CLI starts it before export_item)
    future: Future[FileDigest] = Future()
    before, started = _digest_key(Path(key[0])), time.time_ns()
    known = cached_digest(key[0], key=before)
    if known is not None:  # hashed before and unchanged since (a form's live checks): not read again
        future.set_running_or_notify_cancel()
        future.set_result(known)
        with _BACKGROUND_LOCK:
            _BACKGROUND[key[0]] = (key[1], key[2], future)
        return future

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            show = progress if progress is not None else (key[1] > PROGRESS_THRESHOLD and sys.stderr.isatty())
            digest = None if show else _hash_in_child(key[0], key[1])
            if digest is not None:
                _keep_digest(before, started, digest)
            future.set_result(digest or hash_file(key[0], progress=progress))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the digest
            future.set_exception(exc)

    with _BACKGROUND_LOCK:
        _BACKGROUND[key[0]] = (key[1], key[2], future)
    threading.Thread(target=work, name="mlm-export-hash-early", daemon=True).start()
    return future


def remember(digest: FileDigest) -> None:
    """Record the digest of a file hashed while it was written, so that :func:`take_background` hands it out.

    The file is then not read again, as long as it keeps its size and modification time.
    """
    key = _stat_key(digest.path)
    if key is None or key[1] != digest.size:
        return
    future: Future[FileDigest] = Future()
    future.set_running_or_notify_cancel()
    future.set_result(digest)
    with _BACKGROUND_LOCK:
        _BACKGROUND[key[0]] = (key[1], key[2], future)


def take_background(path: str | os.PathLike[str]) -> Future[FileDigest] | None:
    """The hash :func:`start_background` started (or :func:`remember` kept) for ``path``, if the file is unchanged.

    Unchanged: the same size and modification time as when the hash started (or was kept).
    """
    key = _stat_key(Path(path))
    if key is None:
        return None
    with _BACKGROUND_LOCK:
        entry = _BACKGROUND.pop(key[0], None)
    if entry is None or entry[:2] != key[1:]:
        return None
    return entry[2]


# --- digests of unchanged files ----------------------------------------------------------------------------------

#: How much older than the start of its hash a file's last change (ctime) must be for its digest to be kept: a
#: write in the same timestamp tick as the hash could otherwise leave size and times unchanged (the "racy git"
#: problem). 2 s covers the coarsest file-system clocks (FAT); a file changed later gets a ctime past it.
RACY_MARGIN_NS = 2_000_000_000
#: Digests kept per process (the least recently used are dropped first).
MAX_KEPT_DIGESTS = 256
#: Resolved path -> ((size, mtime_ns, ctime_ns, inode, device), digest).
_DIGESTS: OrderedDict[str, tuple[tuple[int, int, int, int, int], FileDigest]] = OrderedDict()
_DIGESTS_LOCK = threading.Lock()


def _digest_key(path: Path) -> tuple[str, tuple[int, int, int, int, int]] | None:
    """(resolved path, (size, mtime_ns, ctime_ns, inode, device)) of a regular file, or None."""
    try:
        resolved = path.resolve()
        info = resolved.stat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return str(resolved), (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


def cached_digest(
    path: str | os.PathLike[str], *, key: tuple[str, tuple[int, int, int, int, int]] | None = None
) -> FileDigest | None:
    """The digest this process computed for ``path``, if the file is unchanged since: None otherwise.

    Unchanged: the same resolved path, size, modification and change times (ns) and inode; any write, rename over
    it, ``touch`` or ``chmod`` changes one of them, and the file is hashed again. Repeated exports of one file (the
    form's live checks) read it once.
    """
    key = key if key is not None else _digest_key(Path(path))
    if key is None:
        return None
    with _DIGESTS_LOCK:
        entry = _DIGESTS.get(key[0])
        if entry is None or entry[0] != key[1]:
            return None
        _DIGESTS.move_to_end(key[0])
    return FileDigest(Path(path), entry[1].size, entry[1].checksum)


def _keep_digest(before: tuple[str, tuple[int, int, int, int, int]] | None, started: int, digest: FileDigest) -> None:
    """Keep ``digest`` if the file did not change while it was hashed and its last change is not racy."""
    if before is None or before[1][0] != digest.size or before[1][2] >= started - RACY_MARGIN_NS:
        return
    after = _digest_key(Path(before[0]))
    if after != before:
        return  # changed while it was read
    with _DIGESTS_LOCK:
        _DIGESTS[before[0]] = (before[1], FileDigest(Path(before[0]), digest.size, digest.checksum))
        _DIGESTS.move_to_end(before[0])
        while len(_DIGESTS) > MAX_KEPT_DIGESTS:
            _DIGESTS.popitem(last=False)
