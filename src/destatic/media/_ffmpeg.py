"""Running the ffmpeg binary safely, and turning its failures into destatic errors.

Every call goes through :func:`run`: an argument list (never a shell), no
stdin, paths passed as ``file:`` URLs in bytes so that any name works, inputs
opened with a protocol whitelist (``file`` only) and a demuxer whitelist (plain
media containers only: no playlists, concat lists or image sequences, which
could make ffmpeg open other files or reach the network), and a watchdog that
kills a call running longer than its time limit (see :func:`time_limit_for`).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator, Sequence

from destatic.errors import BadInputError, DestaticError, ParameterError, TransientError

FFMPEG_ENV = "DESTATIC_FFMPEG"

# Demuxers allowed to open an input. None of them opens another file or URL.
ALLOWED_DEMUXERS = (
    "mov", "matroska", "avi", "mpeg", "mpegts", "wav", "w64", "flac", "mp3", "ogg", "aac", "aiff",
)

Arg = str | bytes

TIME_LIMIT_FLOOR_S = 300.0
"""Every ffmpeg call may run this long, whatever the size of its input."""

TIME_LIMIT_S_PER_MIB = 1.0
"""Seconds added to the floor per MiB of the input: ffmpeg is given as little as 1 MiB/s."""

KILL_GRACE_S = 5.0
"""How long a killed ffmpeg is waited for before its pipes are closed on it (a process
stuck in an uninterruptible read dies only when the read returns)."""

_time_limit: contextvars.ContextVar[float | None] = contextvars.ContextVar("destatic_ffmpeg_time_limit", default=None)


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


def first_packet_seconds(framecrc: str) -> float | None:
    """Timestamp (s) of the first packet of output stream 0 in the text of ffmpeg's ``framecrc`` muxer; None if none."""
    lines = framecrc.splitlines()
    base = next((m for line in lines if (m := re.fullmatch(r"#tb 0: (\d+)/(\d+)", line.strip()))), None)
    first = next((line.split(",") for line in lines if line.startswith("0,")), None)
    if base is None or first is None or len(first) < 3:
        return None
    return int(first[2]) * int(base.group(1)) / int(base.group(2))


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Give every ffmpeg call made in the block the same time limit, in seconds.

    The limit holds in the block's context and in copies of it (the threads of
    Prefect's thread task runner); None keeps the limit derived per call.

    Raises
    ------
    destatic.errors.ParameterError
        If `seconds` is not a positive number.
    """
    if seconds is not None and not seconds > 0:
        raise ParameterError(f"seconds={seconds!r} must be a positive number of seconds, or None to derive it per call")
    token = _time_limit.set(seconds)
    try:
        yield
    finally:
        _time_limit.reset(token)


def fixed_time_limit() -> float | None:
    """The time limit that :func:`time_limit` set in this context, or None (derived per call)."""
    return _time_limit.get()


def time_limit_for(source: os.PathLike[str] | str | bytes | None) -> float:
    """Seconds an ffmpeg call that reads `source` may run before it is killed.

    The limit set by :func:`time_limit` if any; else :data:`TIME_LIMIT_FLOOR_S`
    plus :data:`TIME_LIMIT_S_PER_MIB` per MiB of `source`. Size, not duration,
    because :func:`run` knows the file but not its duration, and reading a
    file is the one cost every call has. The margin is wide: ffmpeg decodes
    and copies many times faster than 1 MiB/s, and 300 s decode hours of the
    most compressed audio, so a call that reaches the limit is stuck.
    """
    fixed = _time_limit.get()
    if fixed is not None:
        return fixed
    try:
        size = os.stat(source).st_size if source is not None else 0
    except (OSError, ValueError):
        size = 0
    return TIME_LIMIT_FLOOR_S + TIME_LIMIT_S_PER_MIB * size / 2**20


def time_limit_error(source: os.PathLike[str] | str | bytes | None, seconds: float) -> DestaticError:
    """The error for an ffmpeg call stopped by the watchdog after `seconds`.

    :class:`BadInputError` when the call read an input: the limit is so wide
    (see :func:`time_limit_for`) that reaching it means ffmpeg is stuck on
    that input, and a retry would block a worker just as long again, each
    time (a run's retries, then every scan), which is what the watchdog is
    there to prevent. The input is kept in quarantine with the reason, to be
    put back if the cause was elsewhere (a stalled network mount).
    :class:`TransientError` for a call that reads no input (`source` None):
    then the binary or the machine is at fault.
    """
    if source is None:
        return TransientError(f"ffmpeg did not answer within {seconds:g} s (killed)")
    return BadInputError(source, f"ffmpeg did not finish within {seconds:g} s (killed by the watchdog)")


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL `process` and every process it started, then reap it.

    ffmpeg stays in the caller's process group (so that Ctrl-C and a
    supervisor's signals reach it too), so the tree is found through
    ``/proc``: a wrapper script named by ``$DESTATIC_FFMPEG`` dies with its
    children. Waits at most :data:`KILL_GRACE_S` for the pipes to close.
    """
    for pid in [process.pid, *_descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    try:
        process.communicate(timeout=KILL_GRACE_S)
    except (subprocess.TimeoutExpired, ValueError):
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def _descendants(pid: int) -> list[int]:
    """PIDs of the processes below `pid` (Linux ``/proc``; none elsewhere)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    fields = handle.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if len(fields) > 1:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


def run(
    args: Sequence[Arg],
    *,
    source: os.PathLike[str] | str | bytes | None,
    check: bool = True,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg with `args` under a watchdog and raise a destatic error if it fails.

    Parameters
    ----------
    args : sequence of str or bytes
        The full argument list, binary first (see :func:`base_args`).
    source : path-like or None
        The input file that failures are blamed on; None for a call that reads
        no input (``-layouts``).
    check : bool
        If False, a non-zero exit status is returned, not raised (signals and
        time-outs still raise).
    timeout_s : float or None
        Seconds before ffmpeg (and anything it started) is killed; None:
        :func:`time_limit_for` `source`.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as bytes.

    Raises
    ------
    destatic.errors.TransientError
        ffmpeg killed by a signal, could not start, or an I/O error (disk full, EIO).
    destatic.errors.BadInputError
        The time limit passed (see :func:`time_limit_error`), or any other
        failure: the input is what ffmpeg could not handle.
    """
    limit = time_limit_for(source) if timeout_s is None else timeout_s
    try:
        process = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:
        raise TransientError(f"cannot start ffmpeg {args[0]!r}: {error}") from error
    try:
        stdout, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        raise time_limit_error(source, limit) from None
    except BaseException:
        kill_tree(process)
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if done.returncode < 0 or (check and done.returncode != 0):
        raise exit_error(done.returncode, decode_text(done.stderr), source=source)
    return done


def exit_error(returncode: int, stderr: str, *, source: os.PathLike[str] | str | bytes | None) -> DestaticError:
    """The error for an ffmpeg process that ended with `returncode` (non-zero) and wrote `stderr`.

    Killed by a signal, or a call that reads no input: :class:`TransientError`;
    else as :func:`classify_failure` judges `stderr`.
    """
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        processing = "" if source is None else f" while processing {os.fsdecode(source)!r}"
        return TransientError(f"ffmpeg killed by signal {name}{processing}")
    if source is None:
        return TransientError(f"ffmpeg failed with status {returncode}: {stderr[-300:]}")
    return classify_failure(stderr, source=source)


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
            return TransientError(f"ffmpeg failed on {os.fsdecode(source)!r}: {os.strerror(code)}", errno=code)
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
    done = run([ffmpeg_exe(), "-hide_banner", "-layouts"], source=None, check=False)
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
