"""Running the ffmpeg binary safely, and turning its failures into destatic errors.

Every call goes through :func:`run`: an argument list (never a shell), no
stdin, paths passed as ``file:`` URLs in bytes so that any name works, inputs
opened with a protocol whitelist (``file`` only) and a demuxer whitelist (plain
media containers only: no playlists, concat lists or image sequences, which
could make ffmpeg open other files or reach the network).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Sequence

from destatic.errors import BadInputError, ParameterError, TransientError

FFMPEG_ENV = "DESTATIC_FFMPEG"

# Demuxers allowed to open an input. None of them opens another file or URL.
ALLOWED_DEMUXERS = (
    "mov", "matroska", "avi", "mpeg", "mpegts", "wav", "w64", "flac", "mp3", "ogg", "aac", "aiff",
)

Arg = str | bytes


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$DESTATIC_FFMPEG`` if set, else imageio-ffmpeg's.

    Returns
    -------
    str
        An executable path.

    Raises
    ------
    destatic.errors.ParameterError
        If ``$DESTATIC_FFMPEG`` names nothing executable.
    """
    override = os.environ.get(FFMPEG_ENV)
    if override:
        found = shutil.which(override)
        if found is None:
            raise ParameterError(f"{FFMPEG_ENV}={override!r} is not an executable ffmpeg path or command name")
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def file_url(path: os.PathLike[str] | str | bytes) -> bytes:
    """``file:`` URL of `path` as bytes: names starting with ``-``, holding ``:`` or non-UTF-8 bytes all work."""
    return b"file:" + os.fsencode(os.path.abspath(os.fsencode(path)))


def input_args(path: os.PathLike[str] | str | bytes) -> list[Arg]:
    """The ``-i`` arguments that open `path` through the ``file`` protocol only, with a demuxer
    ffmpeg sniffs among :data:`ALLOWED_DEMUXERS` (a playlist or concat list is refused even when
    named ``.mp4``)."""
    return [
        "-protocol_whitelist", "file",
        "-format_whitelist", ",".join(ALLOWED_DEMUXERS),
        "-i", file_url(path),
    ]


def output_args(path: os.PathLike[str] | str | bytes, *, muxer: str) -> list[Arg]:
    """The trailing arguments that write `path` with `muxer`, through the ``file`` protocol only."""
    return ["-protocol_whitelist", "file", "-f", muxer, "-y", file_url(path)]


def base_args(*, loglevel: str = "error") -> list[Arg]:
    """The leading arguments of every call: binary, no banner, no stdin, log level."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", loglevel]


def decode_text(raw: bytes) -> str:
    """ffmpeg's output as text, line by line: UTF-8 where valid, else Latin-1 (never fails)."""
    lines = []
    for line in raw.splitlines():
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
    return "\n".join(lines)


def run(args: Sequence[Arg], *, source: os.PathLike[str] | str | bytes, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg with `args` and raise a destatic error if it fails.

    Parameters
    ----------
    args : sequence of str or bytes
        The full argument list, binary first (see :func:`base_args`).
    source : path-like
        The input file that failures are blamed on.
    check : bool
        If False, a non-zero exit status is returned, not raised (signals still raise).

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as bytes.

    Raises
    ------
    destatic.errors.TransientError
        ffmpeg killed by a signal, could not start, or an I/O error (disk full, EIO).
    destatic.errors.BadInputError
        Any other failure: the input is what ffmpeg could not handle.
    """
    try:
        done = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as error:
        raise TransientError(f"cannot start ffmpeg {args[0]!r}: {error}") from error
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else str(-done.returncode)
        raise TransientError(f"ffmpeg killed by signal {name} while processing {os.fsdecode(source)!r}")
    if check and done.returncode != 0:
        raise classify_failure(decode_text(done.stderr), source=source)
    return done


_TRANSIENT_MARKERS = {
    "No space left on device": errno.ENOSPC,
    "Input/output error": errno.EIO,
    "Disk quota exceeded": errno.EDQUOT,
    "Cannot allocate memory": errno.ENOMEM,
}

_BAD_INPUT_MARKERS = (
    ("Format not on whitelist", "container not allowed (playlists, concat lists and image sequences are refused)"),
    ("Protocol not on whitelist", "refers to another file or URL, which is refused"),
    ("No such file or directory", "does not exist (vanished?)"),
    ("Permission denied", "cannot be read (permission denied)"),
    ("moov atom not found", "not media, truncated or corrupt (no moov atom)"),
    ("Invalid data found when processing input", "not media, truncated or corrupt (ffmpeg finds no valid data)"),
    ("Decoder not found", "audio codec not supported"),
    ("Decoding requested, but no decoder", "audio codec not supported"),
    ("Error while opening decoder", "audio codec not supported"),
)


def strip_context(line: str) -> str:
    """An ffmpeg log line without its ``[component @ 0x...]`` prefixes."""
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())


def classify_failure(stderr: str, *, source: os.PathLike[str] | str | bytes) -> Exception:
    """The error to raise for a failed ffmpeg run, judged from its stderr.

    Disk full, I/O and memory errors are transient (the pipeline retries them with
    backoff: another job may free space); anything else blames the input.
    """
    for marker, code in _TRANSIENT_MARKERS.items():
        if marker in stderr:
            return TransientError(f"ffmpeg failed on {os.fsdecode(source)!r}: {os.strerror(code)}")
    for marker, reason in _BAD_INPUT_MARKERS:
        if marker in stderr:
            return BadInputError(source, reason)
    last = next((strip_context(line) for line in reversed(stderr.splitlines()) if line.strip()), "no message")
    return BadInputError(source, f"ffmpeg failed: {last[:300]}")


def check_readable(path: os.PathLike[str] | str | bytes) -> None:
    """Raise :class:`BadInputError` unless `path` is an existing, readable, non-empty regular file.

    Checked before ffmpeg runs so that the reason is precise, and so that a FIFO
    or device never reaches ffmpeg (it would block or read forever).
    """
    try:
        mode = os.stat(path)
        if stat.S_ISDIR(mode.st_mode):
            raise BadInputError(path, "is a directory, not a media file")
        if not stat.S_ISREG(mode.st_mode):
            raise BadInputError(path, "is not a regular file (a device, FIFO or socket)")
        if mode.st_size == 0:
            raise BadInputError(path, "is empty (0 bytes)")
        with open(path, "rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        raise BadInputError(path, "does not exist (vanished?)") from None
    except PermissionError:
        raise BadInputError(path, "cannot be read (permission denied)") from None
    except OSError as error:
        if error.errno in (errno.EIO, errno.ENOMEM):
            raise TransientError(f"cannot read {os.fsdecode(path)!r}: {error.strerror}") from error
        raise BadInputError(path, f"cannot be read: {error.strerror}") from None


@functools.cache
def channel_layouts() -> dict[str, int]:
    """Channel count of every named layout ffmpeg knows (``ffmpeg -layouts``), e.g. ``{"5.1(side)": 6}``."""
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-layouts"], stdin=subprocess.DEVNULL, capture_output=True, check=False)
    layouts: dict[str, int] = {}
    in_table = False
    for line in decode_text(done.stdout + done.stderr).splitlines():
        if line.startswith("Standard channel layouts"):
            in_table = True
            continue
        match = re.match(r"^(\S+)\s+([A-Z0-9]+(?:\+[A-Z0-9]+)*)$", line.strip())
        if in_table and match:
            layouts[match.group(1)] = match.group(2).count("+") + 1
    return layouts
