"""Write a file so that it appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "partial_owner", "partial_path"]


NAME_MAX = 255  # bytes in one file name on Linux filesystems
_PARTIAL_NAME = re.compile(rb"\A\..*\.(\d+)-[0-9a-f]{8}\.partial(\.[^.]*)?\Z", re.DOTALL)


def partial_path(target: os.PathLike[str] | str) -> Path:
    """A fresh temporary name beside `target`, hidden, keeping its suffix (``x.mp4`` -> ``.x.<pid>-<rand>.partial.mp4``).

    The name carries the PID of the writing Python process so that a sweep can
    tell the leftovers of a killed process (see :func:`partial_owner`).
    """
    target = Path(target)
    tail = f".{os.getpid()}-{secrets.token_hex(4)}.partial{target.suffix}"
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    stem = os.fsdecode(os.fsencode(target.stem)[: max(room, 1)])
    return target.with_name(f".{stem}{tail}")


def partial_owner(path: os.PathLike[str] | str) -> int | None:
    """The PID in a name made by :func:`partial_path`, or None if the name is not one of those."""
    match = _PARTIAL_NAME.match(os.fsencode(Path(path).name))
    return int(match.group(1)) if match else None


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
