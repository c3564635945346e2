"""Write a file so that it appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "partial_path"]


NAME_MAX = 255  # bytes in one file name on Linux filesystems


def partial_path(target: os.PathLike[str] | str) -> Path:
    """A fresh temporary name beside `target`, hidden, keeping its suffix (``.x.mp4`` -> ``..x.<rand>.partial.mp4``)."""
    target = Path(target)
    tail = f".{secrets.token_hex(4)}.partial{target.suffix}"
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    stem = os.fsdecode(os.fsencode(target.stem)[: max(room, 1)])
    return target.with_name(f".{stem}{tail}")


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
