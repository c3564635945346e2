"""Filesystem notifications for a local inbox: wake the watcher the moment a file settles. No Prefect here.

watchfiles (inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on
Windows) reports writes; a file counts as settled, as in
:func:`destatic.inbox.find_ready`, once its mtime is ``watch.stable_s`` old.
Notifications are local: a network mount (NFS, SMB, ...) does not report
other machines' writes, so there the watcher keeps to its scans
(``watch.events = "auto"``). Events only wake the scan: the claim is the
scan's, one way for every file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from destatic.inbox import media_suffixes
from destatic.settings import EventsMode

__all__ = ["NETWORK_FILE_SYSTEMS", "SettleWatch", "events_work", "file_system_type"]

NETWORK_FILE_SYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "ocfs2", "gfs2",
    "davfs", "fuse.sshfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.glusterfs", "fuse.cephfs", "fuse.juicefs",
})
"""File system types (``/proc/mounts``) whose writes by other machines raise no local notification."""
CHECK_EVERY_MS = 100
"""How often pending files are checked for having settled: the most the wake-up can lag behind."""


def _unescape(field: str) -> str:
    """A ``/proc/mounts`` field with its octal escapes (``\\040`` for a space) decoded."""
    return field.encode().decode("unicode_escape")


def file_system_type(folder: Path, mounts: Path = Path("/proc/mounts")) -> str | None:
    """The type of the file system `folder` is on (``ext4``, ``nfs4``, ...), from the mount table; None where there is none (macOS)."""
    try:
        lines = mounts.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    where = os.path.realpath(folder)
    best, kind = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def events_work(folder: Path, mode: EventsMode) -> bool:
    """Whether to watch `folder` by notifications: ``on``/``off`` as set; ``auto`` unless watchfiles is missing or the folder is on a network mount."""
    if mode != "auto":
        return mode == "on"
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return file_system_type(folder) not in NETWORK_FILE_SYSTEMS


class SettleWatch:
    """A thread that calls `on_settled(paths)` as soon as files written in `folder` have settled.

    Parameters
    ----------
    folder : Path
        The inbox; hidden names (claims, failure records) and files without a media suffix are ignored.
    stable_s : float
        A file has settled once its mtime is this old (``watch.stable_s``).
    on_settled : callable
        Called in the thread with the paths that settled; it should return quickly.
    """

    def __init__(self, folder: Path, stable_s: float, on_settled: Callable[[list[Path]], None]) -> None:
        self.folder = Path(folder).absolute()
        self.stable_s = stable_s
        self.on_settled = on_settled
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="destatic-settle-watch", daemon=True)
        self._suffixes = media_suffixes()

    def __enter__(self) -> SettleWatch:
        self._thread.start()
        self._ready.wait(10.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _wanted(self, path: Path) -> bool:
        try:
            relative = path.relative_to(self.folder)
        except ValueError:
            return False
        return path.suffix.lower() in self._suffixes and not any(part.startswith(".") for part in relative.parts)

    def _settled(self, pending: dict[Path, float]) -> list[Path]:
        now, settled = time.time(), []
        for path in list(pending):
            try:
                mtime = path.lstat().st_mtime
            except FileNotFoundError:
                del pending[path]
                continue
            if now - mtime >= self.stable_s:
                settled.append(path)
                del pending[path]
        return settled

    def _run(self) -> None:
        import watchfiles

        pending: dict[Path, float] = {}
        for changes in watchfiles.watch(
            self.folder, stop_event=self._stop, rust_timeout=CHECK_EVERY_MS, yield_on_timeout=True, step=20, debounce=CHECK_EVERY_MS,
            raise_interrupt=False,
        ):
            self._ready.set()
            for change, name in changes:
                path = Path(name)
                if change != watchfiles.Change.deleted and self._wanted(path):
                    pending[path] = time.time()
            settled = self._settled(pending)
            if settled:
                self.on_settled(settled)
