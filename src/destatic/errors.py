"""Error types shared by every layer of destatic.

One root, :class:`DestaticError`, and three kinds under it that callers act on
differently: a bad argument (fix the call), a bad input file (quarantine it,
never retry) and a transient failure (retry with backoff).
"""

from __future__ import annotations

import errno as errnos
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["BadInputError", "DestaticError", "ParameterError", "TransientError", "blames_the_file", "causes", "display_path", "is_disk_full", "reason_of"]


class DestaticError(Exception):
    """Root of every error destatic raises on purpose."""


class ParameterError(DestaticError, ValueError):
    """A function argument or setting has a value that is not allowed.

    The message quotes the bad value and says what is allowed, e.g.
    ``reduction_db=-3 must be a positive number of dB``.
    """


def display_path(path: os.PathLike[str] | str | bytes) -> str:
    """Render a path for a one-line message, whatever bytes its name holds."""
    raw = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return raw.encode("utf-8", "backslashreplace").decode("utf-8").replace("\n", "\\n")


class BadInputError(DestaticError):
    """An input file cannot be processed: not media, corrupt, no audio, ...

    Never retried: the pipeline moves the file to quarantine.

    Parameters
    ----------
    path : path-like
        The offending input file.
    reason : str
        One line saying what is wrong with it.
    """

    def __init__(self, path: os.PathLike[str] | str | bytes, reason: str) -> None:
        self.path = path
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{display_path(path)}: {self.reason}")

    def __reduce__(self) -> tuple[type[BadInputError], tuple[os.PathLike[str] | str | bytes, str]]:
        """Pickle with both arguments (the default passes only the message), e.g. from a Dask worker or a step's child process."""
        return (type(self), (self.path, self.reason))


class TransientError(DestaticError):
    """A failure that may not happen again: ffmpeg killed, an I/O error.

    The pipeline retries these with backoff. A watched file that still fails
    goes back to the inbox, and to quarantine only after
    ``watch.max_attempts`` runs that failed so.

    Parameters
    ----------
    message : str
    errno : int or None
        The system error behind it, when known (``errno.ENOSPC``: disk full).
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the errno too (from a step's child process or a Dask worker)."""
        return (_transient_error, (str(self), self.errno))


def _transient_error(message: str, errno: int | None) -> TransientError:
    return TransientError(message, errno=errno)


def reason_of(error: BaseException) -> str:
    """One line saying why a file failed (with what became of it, once it is settled: the error's notes)."""
    reason = error.reason if isinstance(error, BadInputError) else " ".join(f"{type(error).__name__}: {error}".split())
    return "; ".join([reason, *getattr(error, "__notes__", ())])


def blames_the_file(error: BaseException) -> bool:
    """Whether `error` comes back on every run of the file, so that it is quarantined at once.

    Bad input: the file itself, or a step refusing its audio (a 4 kHz rate,
    NaN samples) or finding that the settings do not fit it (a noise segment
    past its end), which the flows turn into bad input. Neither is retried by
    a step; any other error may not recur.
    """
    return isinstance(error, BadInputError)


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then the error it was raised from (``__cause__``, else ``__context__``), and so on (each once)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) says a disk or quota is full."""
    return any(isinstance(current, (OSError, TransientError)) and current.errno in (errnos.ENOSPC, errnos.EDQUOT) for current in causes(error))
