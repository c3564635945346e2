"""Content hashes of input files: computed once per file version, and early where that helps.

No Prefect here, so that the CLI can start hashing its inputs (:func:`prefetch`)
before the pipeline's modules are imported; hashlib and file reads release
the GIL, so the hash runs on another core meanwhile.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from destatic.errors import BadInputError

__all__ = ["file_digest", "prefetch"]

_Stamp = tuple[int, int, int, int]
_digests: dict[_Stamp, str] = {}
_hashing: dict[_Stamp, threading.Lock] = {}
_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered while its inode, size and mtime stay the same.

    A caller asking for a file another thread is hashing waits for that hash
    instead of reading the file again.

    Raises
    ------
    BadInputError
        The file is missing, not a regular file, or unreadable.
    """
    try:
        stat = os.stat(path)
    except OSError as error:
        raise BadInputError(path, f"cannot be read: {error.strerror}") from None
    if not os.path.isfile(path):
        raise BadInputError(path, "is not a regular file")
    stamp = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _lock:
        known = _digests.get(stamp)
        hashing = _hashing.setdefault(stamp, threading.Lock()) if known is None else None
    if hashing is None:
        return known
    with hashing:
        with _lock:
            known = _digests.get(stamp)
        if known is not None:
            return known
        try:
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            with _lock:
                _digests[stamp] = digest
        except OSError as error:
            raise BadInputError(path, f"cannot be read: {error.strerror}") from None
        finally:
            with _lock:
                _hashing.pop(stamp, None)
    return digest


def prefetch(paths: Iterable[Path]) -> threading.Thread:
    """Hash `paths` in a background thread, one after another; errors are left for the real call to raise.

    Returns the (daemon) thread, already started.
    """

    def run() -> None:
        for path in paths:
            try:
                file_digest(path)
            except BadInputError:
                continue

    thread = threading.Thread(target=run, daemon=True, name="destatic-digest")
    thread.start()
    return thread
