"""Error types shared by every layer of destatic.

One root, :class:`DestaticError`, and the kinds under it that callers act on
differently, each saying who is at fault:

- the caller: a bad argument or setting (:class:`ParameterError`: fix the call);
- the file: bad input (:class:`BadInputError`: quarantine it, never retry),
  among it audio the DSP refuses (:class:`UncleanableAudioError`);
- nobody: a transient failure (:class:`TransientError`: retry with backoff);
- destatic itself: a broken promise between its own parts, or a broken
  install (:class:`InternalError`: the run fails loudly, the file is kept).

A step that raises anything but bad input never quarantines the file.
"""

from __future__ import annotations

import errno as errnos
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BadInputError",
    "DestaticError",
    "InternalError",
    "ParameterError",
    "TransientError",
    "UncleanableAudioError",
    "blames_destatic",
    "blames_the_file",
    "causes",
    "display_path",
    "is_disk_full",
    "reason_of",
]


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


class UncleanableAudioError(BadInputError, ParameterError):
    """This audio cannot be cleaned: the DSP refuses it (a 4 kHz rate, NaN samples, 65 channels), or the settings
    do not fit it (a noise stretch past its end, a saved profile of another rate).

    Bad input, so the pipeline quarantines its file; to a caller of the
    library it is also a :class:`ParameterError` (the audio argument is not
    allowed). The DSP knows no file: it raises it without a path, and the
    flow names the file (:meth:`for_file`).

    Parameters
    ----------
    reason : str
        One line saying what is wrong with the audio.
    path : path-like or None
        Its file, once known.
    """

    def __init__(self, reason: str, path: os.PathLike[str] | str | bytes | None = None) -> None:
        self.path = path
        self.reason = " ".join(str(reason).split())
        Exception.__init__(self, self.reason if path is None else f"{display_path(path)}: {self.reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the path (from a step's child process or a Dask worker)."""
        return (type(self), (self.reason, self.path))

    def for_file(self, path: os.PathLike[str] | str | bytes) -> UncleanableAudioError:
        """The same refusal, naming the file it is about (``FILE: its audio cannot be cleaned: REASON``)."""
        return type(self)(f"its audio cannot be cleaned: {self.reason}", path)


class InternalError(DestaticError, RuntimeError):
    """destatic broke a promise between its own parts (a step's output not as the next step needs it), or its
    install is broken (a model file not as this engine reads it).

    Never the input's fault: not retried, never quarantines a file; the run
    fails with the message, for a bug report.
    """


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
    past its end): :class:`UncleanableAudioError`. Neither is retried by a
    step; any other error may not recur.
    """
    return isinstance(error, BadInputError)


def blames_destatic(error: BaseException) -> bool:
    """Whether `error` is a fault in destatic itself (:class:`InternalError`, or a :class:`ParameterError` that is not
    bad input: one of its parts called another wrongly), so that it never quarantines a file."""
    return isinstance(error, InternalError | ParameterError) and not isinstance(error, BadInputError)


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
