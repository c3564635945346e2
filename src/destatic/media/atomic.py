"""Write a file so that it appears complete or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HOST_TAG", "atomic_output", "partial_left_behind", "partial_owner", "partial_path", "process_alive", "process_start"]


NAME_MAX = 255  # bytes in one file name on Linux filesystems
_PARTIAL_NAME = re.compile(rb"\A\..*\.([0-9a-f]{8})-(\d+)(?:\.(\d+))?-[0-9a-f]{8}\.partial(\.[^.]*)?\Z", re.DOTALL)
HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]
"""This host in temporary names: a PID means something only on the host that wrote it."""


def partial_path(target: os.PathLike[str] | str) -> Path:
    """A fresh temporary name beside `target`, hidden, keeping its suffix (``x.mp4`` -> ``.x.<host>-<pid>.<start>-<rand>.partial.mp4``).

    The name carries this host's :data:`HOST_TAG`, the PID of the writing
    Python process and when that process started (:func:`process_start`), so
    that a sweep can tell the leftovers of a killed process of its own host
    from files other hosts are writing on a shared folder, and from those of
    a later process given the same PID (see :func:`partial_left_behind`).
    """
    target = Path(target)
    pid = os.getpid()
    started = process_start(pid)
    tail = f".{HOST_TAG}-{pid}{'' if started is None else f'.{started}'}-{secrets.token_hex(4)}.partial{target.suffix}"
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    stem = os.fsdecode(os.fsencode(target.stem)[: max(room, 1)])
    return target.with_name(f".{stem}{tail}")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the first is the state); None where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot (``/proc/<pid>/stat``); None where that cannot be read."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` of this host still runs (one of another user counts; a zombie does not).

    With `started` (its :func:`process_start`), only if the process with that
    PID is the one that started then: PIDs are reused, and over months a dead
    process's PID is taken by another one.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if not fields:
        return True  # no /proc: the PID must do
    if fields[0] == "Z":  # a zombie (a child not yet reaped) is gone
        return False
    return started is None or len(fields) <= 19 or int(fields[19]) == started


def _partial_match(path: os.PathLike[str] | str) -> re.Match[bytes] | None:
    """The parts of a name :func:`partial_path` made on this host (host, PID, start time); None for any other name (or host)."""
    match = _PARTIAL_NAME.match(os.fsencode(Path(path).name))
    return match if match is not None and match.group(1).decode("ascii") == HOST_TAG else None


def partial_owner(path: os.PathLike[str] | str) -> int | None:
    """The PID in a name :func:`partial_path` made on this host; None for any other name (or host)."""
    match = _partial_match(path)
    return None if match is None else int(match.group(2))


def partial_left_behind(path: os.PathLike[str] | str) -> bool:
    """Whether `path` is a name :func:`partial_path` made on this host for a process that is gone.

    Gone: no process has its PID, or the one that has it started at another
    time (:func:`process_alive`). Names without a start time (older versions) go by the PID alone.
    """
    match = _partial_match(path)
    if match is None:
        return False
    return not process_alive(int(match.group(2)), None if match.group(3) is None else int(match.group(3)))


@contextlib.contextmanager
def atomic_output(target: os.PathLike[str] | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it to `target` if the block succeeds.

    The temporary file is in the same directory, so the final ``os.replace`` is
    atomic: readers see the old file or the complete new one, never a partial
    write. If the block raises (or is interrupted), the temporary file is
    removed and `target` is left as it was. The rename gives atomicity, not
    durability: nothing is fsynced.

    Parameters
    ----------
    target : path-like
        Where the finished file must end up; its directory must exist.

    Yields
    ------
    Path
        A path that does not exist yet, with `target`'s suffix, for the block to write.

    Raises
    ------
    FileNotFoundError
        If the block succeeded without writing the temporary file.
    """
    partial = partial_path(target)
    try:
        yield partial
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
