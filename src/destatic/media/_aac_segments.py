"""Encode long audio to AAC in several ffmpeg processes at once, spliced into one gapless stream.

ffmpeg's native AAC encoder uses one core. Here the audio is cut at AAC frame
boundaries (1024 samples) into one segment per core; each segment is encoded
by its own ffmpeg with pre-roll (audio before it, so that the encoder's rate
control and window decisions have settled) and post-roll (audio after it, so
that its last frames are coded as if the audio went on), and the packets that
belong to the segment are concatenated into one ADTS stream.

A decoded AAC frame is the overlap-add of two MDCT blocks, its own packet's
and the previous one's, so the frame at a splice mixes two encoders; their
time-domain aliasing cancels only if both chose the same windows there. Each
splice is therefore made where both encoders chose identical long windows
(read from the packets' headers), near the even split: never across a
transient, where an encoder switches to short blocks.

Encoder packet ``k`` of audio starting at frame ``s`` decodes to the samples
of frame ``s + k - 1`` (packet 0 is the encoder's 1024 samples of priming),
the same packet index ``s + k`` as in one encode of the whole file; the spliced
stream has the packet count of a single encode, and :meth:`SplicedAAC.timestamp_args`
gives its packets the timestamps and final duration ffmpeg gives a single
encode's, so muxers trim the priming and the padding alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import time
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from destatic._cpus import available_cpus, bind_to_cpu, one_cpu_each
from destatic._interrupts import interrupts_deferred
from destatic.errors import InternalError, ParameterError, TransientError
from destatic.media import _ffmpeg
from destatic.media.atomic import partial_path

__all__ = ["MAX_JOBS", "MIN_SEGMENT_SECONDS", "SPLICE_MUXERS", "SplicedAAC", "adts_offsets", "check_n_jobs", "encoder_jobs", "parallel_aac"]

FRAME_SAMPLES = 1024
READ_BLOCK = 1 << 20
MAX_JOBS = 4
"""Most encoders run at once (more buys little and costs memory and splices)."""
MIN_SEGMENT_SECONDS = 20.0
"""Shortest segment ``n_jobs=None`` gives an encoder. Measured with 2 CPUs (benchmarks/media_remux.py):
20 s of audio split in two takes as long as one encode, 40 s takes 0.71 of it, 120 s 0.65."""
PRE_ROLL_FRAMES = 32
"""Frames an encoder codes before the first frame it may contribute (about 0.7 s at 48 kHz)."""
SEARCH_FRAMES = 24
"""Splices are sought this many frames either side of the even split."""
POST_ROLL_FRAMES = 4
"""Frames an encoder codes after the last frame it may contribute (an MDCT block and the look-ahead span 2)."""
LEAD_IN_FRAMES = 1
"""Silent frames fed to every encoder but the first before its audio. ffmpeg's rate control starts from a
fixed lambda and creeps from there (4 to 5 dB lower SNR for 10 s or more on music); a silent frame makes it
jump and settle at once, as on a file that starts with silence."""
ADTS_TICKS_PER_SECOND = 28_224_000
"""Time base of ffmpeg's ADTS demuxer: a whole number of ticks per sample at every AAC rate."""
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

SPLICE_MUXERS = ("mp4", "mov", "ipod", "mpegts")
"""Muxers that take the spliced stream with a single encode's timestamps, priming and end trim. Not
matroska: a copied AAC stream carries no encoder delay, so its priming would be played (and avi has none)."""

_ONLY_LONG = 0


@dataclasses.dataclass(frozen=True)
class SplicedAAC:
    """One ADTS stream spliced from segment encodes, ready to be muxed with ``-c copy``.

    Attributes
    ----------
    path : Path
        The ADTS file.
    packets : int
        Its packet count (a single encode's: one per 1024 samples, rounded up, plus priming).
    frames : int
        Samples per channel of the audio it encodes.
    sample_rate : int
        Hz.
    splices : tuple of int
        Index of the first packet taken from each encoder after the first.
    """

    path: Path
    packets: int
    frames: int
    sample_rate: int
    splices: tuple[int, ...]

    def timestamp_args(self, index: int, *, offset: float = 0.0) -> list[str]:
        """ffmpeg output arguments giving output stream `index` a single encode's timestamps.

        Packet ``n`` starts at ``offset`` plus ``n - 1`` frames (packet 0 is the
        priming, before the start, which muxers trim as they trim a single
        encode's); the last packet lasts only as long as the audio does.

        Parameters
        ----------
        index : int
            The output stream the ADTS stream is copied to.
        offset : float
            Seconds at which the first sample plays, as ``-itsoffset`` would place it.
        """
        tick = ADTS_TICKS_PER_SECOND // self.sample_rate
        start = round(offset * self.sample_rate) * tick
        frame = FRAME_SAMPLES * tick
        last = (self.frames - (self.packets - 2) * FRAME_SAMPLES) * tick
        stamp = f"{start}+(N-1)*{frame}"
        duration = f"if(eq(N\\,{self.packets - 1})\\,{last}\\,{frame})"
        return [f"-bsf:{index}", f"setts=pts={stamp}:dts={stamp}:duration={duration}"]


def check_n_jobs(n_jobs: int | None) -> None:
    """Raise :class:`ParameterError` unless `n_jobs` is None or a positive integer."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        raise ParameterError(f"n_jobs={n_jobs!r} must be None (automatic) or an integer >= 1")


def encoder_jobs(frames: int, sample_rate: int, channels: int, n_jobs: int | None = None) -> int:
    """How many AAC encoders to run at once for `frames` samples per channel; 1 means one encode.

    Parameters
    ----------
    frames : int
        Samples per channel.
    sample_rate : int
        Hz; rates AAC does not have get 1.
    channels : int
        Mono and stereo are split; more channels get 1 (their packets hold
        several elements, whose windows cannot be read without decoding).
    n_jobs : int or None
        None: one per usable CPU (at most :data:`MAX_JOBS`), each with at least
        :data:`MIN_SEGMENT_SECONDS` of audio. An integer forces that many (at
        most as many as segments long enough for a splice search).

    Raises
    ------
    destatic.errors.ParameterError
        `n_jobs` is not None or a positive integer.
    """
    check_n_jobs(n_jobs)
    if channels not in (1, 2) or sample_rate not in AAC_SAMPLE_RATES:
        return 1
    blocks = -(-frames // FRAME_SAMPLES)
    room = blocks // (2 * SEARCH_FRAMES + PRE_ROLL_FRAMES + POST_ROLL_FRAMES)
    if n_jobs is None:
        n_jobs = min(available_cpus(), MAX_JOBS, int(frames // (MIN_SEGMENT_SECONDS * sample_rate)))
    return max(1, min(n_jobs, room))


@dataclasses.dataclass(frozen=True)
class _Segment:
    first_frame: int
    """Frame index (in 1024 samples) of the first sample this encoder reads."""
    end_frame: int | None
    """Frame index after the last sample it reads; None: to the end."""
    path: Path

    @property
    def lead(self) -> int:
        """Silent frames fed before the audio: one for every segment but the first (see :data:`LEAD_IN_FRAMES`)."""
        return LEAD_IN_FRAMES if self.first_frame else 0

    @property
    def packet_offset(self) -> int:
        """Global index of this encoder's packet 0."""
        return self.first_frame - self.lead


def _plan(blocks: int, jobs: int, target: Path) -> tuple[list[int], list[_Segment]]:
    """Even split points (frame indices) and the segments that cover them with their margins."""
    splits = [round(i * blocks / jobs) for i in range(1, jobs)]
    segments = []
    for i in range(jobs):
        first = 0 if i == 0 else splits[i - 1] - SEARCH_FRAMES - PRE_ROLL_FRAMES
        end = None if i == jobs - 1 else splits[i] + SEARCH_FRAMES + POST_ROLL_FRAMES
        segments.append(_Segment(first, end, partial_path(target.with_suffix(".aac"))))
    return splits, segments


def _encoder_args(wav: Path, segment: _Segment, *, sample_rate: int, bitrate: int) -> list[_ffmpeg.Arg]:
    seek: list[_ffmpeg.Arg] = []
    if segment.first_frame:
        seek += ["-ss", f"{segment.first_frame * FRAME_SAMPLES / sample_rate:.6f}"]
    if segment.end_frame is not None:
        seek += ["-t", f"{(segment.end_frame - segment.first_frame) * FRAME_SAMPLES / sample_rate:.6f}"]
    lead = ["-af", f"adelay=delays={segment.lead * FRAME_SAMPLES}S:all=1"] if segment.lead else []
    return [
        *_ffmpeg.base_args(),
        *seek,
        *_ffmpeg.input_args(wav),
        "-map", "0:a:0", "-map_metadata", "-1", *lead,
        "-c:a", "aac", "-b:a", str(bitrate),
        *_ffmpeg.output_args(segment.path, muxer="adts"),
    ]


def _run_all(commands: Sequence[Sequence[_ffmpeg.Arg]], logs: Sequence[Path], *, source: os.PathLike[str] | str) -> None:
    """Run the ffmpeg `commands` at once; on any failure, interruption or time-out kill them all, then raise.

    With one command per usable CPU, each is bound to its own CPU
    (:func:`one_cpu_each`): its threads then hand frames to one another on
    one core (measured on 2 cores: the 10-minute encode 4.0-4.6 s unbound,
    3.9-4.0 s bound). Each one's stderr goes to its log file (no pipe can fill and block it).
    They share one watchdog limit, :func:`_ffmpeg.time_limit_for` `source`;
    errors are classified as :func:`_ffmpeg.run` classifies them.
    """
    limit = _ffmpeg.time_limit_for(source)
    deadline = time.monotonic() + limit
    running: list[subprocess.Popen[bytes]] = []
    cpus = one_cpu_each(len(commands))
    try:
        with interrupts_deferred():
            for args, log in zip(commands, logs, strict=True):
                with open(log, "wb") as stderr:
                    try:
                        running.append(subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr))
                    except OSError as error:
                        raise TransientError(f"cannot start ffmpeg {args[0]!r}: {error}") from error
                if cpus is not None:  # at once, before ffmpeg starts its threads
                    bind_to_cpu(running[-1].pid, cpus[len(running) - 1])
        waiting = list(zip(running, logs, strict=True))
        while waiting:
            for process, log in list(waiting):
                code = process.poll()
                if code is None:
                    continue
                waiting.remove((process, log))
                if code != 0:
                    raise _ffmpeg.exit_error(code, _ffmpeg.decode_text(log.read_bytes()), source=source)
            if waiting and time.monotonic() > deadline:
                raise _ffmpeg.time_limit_error(source, limit)
            if waiting:
                time.sleep(0.01)
    finally:
        for process in running:
            if process.poll() is None:
                _ffmpeg.kill_tree(process)
            process.wait()


def adts_offsets(path: Path) -> array:
    """Where each frame of an ADTS file starts, and the file's end: ``frames + 1`` offsets.

    Read in blocks, so that an hour of audio costs its offsets (8 bytes a
    frame), not its bytes.

    Raises
    ------
    InternalError
        A frame does not start with the ADTS sync word or runs past the end.
    """
    offsets = array("q")
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        block, base, position = b"", 0, 0
        while position < size:
            if position + 7 > base + len(block):
                handle.seek(position)
                block, base = handle.read(READ_BLOCK), position
            i = position - base
            if size - position < 7 or block[i] != 0xFF or block[i + 1] & 0xF6 != 0xF0:
                raise InternalError(f"no ADTS frame at byte {position}")
            length = (block[i + 3] & 0x03) << 11 | block[i + 4] << 3 | block[i + 5] >> 5
            if length < 7 or position + length > size:
                raise InternalError(f"ADTS frame at byte {position} has an impossible length {length}")
            offsets.append(position)
            position += length
    offsets.append(position)
    return offsets


class _Packets:
    """The frames of one encoded segment by index: their offsets held, their bytes read when asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets = adts_offsets(path)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> bytes:
        index = index + len(self) if index < 0 else index
        if not 0 <= index < len(self):
            raise IndexError(index)
        with open(self.path, "rb") as handle:
            handle.seek(self.offsets[index])
            return handle.read(self.offsets[index + 1] - self.offsets[index])

    def copy_to(self, out: BinaryIO, start: int, stop: int | None) -> int:
        """Append frames ``start`` to `stop` (None: the last) to `out`; return how many."""
        stop = len(self) if stop is None else stop
        with open(self.path, "rb") as handle:
            handle.seek(self.offsets[start])
            left = self.offsets[stop] - self.offsets[start]
            while left > 0:
                chunk = handle.read(min(READ_BLOCK, left))
                if not chunk:
                    raise InternalError(f"{self.path.name} ended before its last frame")
                out.write(chunk)
                left -= len(chunk)
        return stop - start


class _Bits:
    def __init__(self, data: bytes | memoryview) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def read(self, count: int) -> int:
        if count > self.left:
            raise InternalError("AAC frame ends inside its element headers")
        self.left -= count
        return (self.value >> self.left) & ((1 << count) - 1)


def window_info(packet: bytes | memoryview) -> tuple[int, int] | None:
    """(window_sequence, window_shape) shared by every channel of one ADTS frame; None if unknown.

    Only the first channel element is read (a mono SCE or a stereo CPE, after
    any fill elements); a CPE whose two channels have separate windows gives
    None, as does a frame with more than one raw data block or CRC words.
    """
    if not packet[1] & 0x01 or packet[6] & 0x03:
        return None
    bits = _Bits(packet[7 : 7 + 64])
    while True:
        element = bits.read(3)
        if element == 6:  # FIL: skip its bytes
            count = bits.read(4)
            if count == 15:
                count += bits.read(8) - 1
            bits.read(8 * count)
            continue
        if element == 0:  # SCE: tag, global gain, ics_info
            bits.read(4 + 8 + 1)
            return bits.read(2), bits.read(1)
        if element == 1:  # CPE: tag, common_window, ics_info
            bits.read(4)
            if not bits.read(1):
                return None
            bits.read(1)
            return bits.read(2), bits.read(1)
        return None


def _choose_splice(before: _Packets, after: _Packets, *, split: int, before_first: int, after_first: int) -> int | None:
    """The global packet index nearest `split` at which `after`'s packets may follow `before`'s.

    Frames ``g - 1`` and ``g`` must have identical long windows in both encodes
    (the encoders agree, and no transient is near), failing that identical
    windows of any kind; None if no packet in the search range qualifies.
    """
    candidates = sorted(range(split - SEARCH_FRAMES, split + SEARCH_FRAMES + 1), key=lambda g: (abs(g - split), g))
    fallback = None
    for g in candidates:
        windows = []
        for packets, first in ((before, before_first), (after, after_first)):
            windows.append([window_info(packets[k - first]) for k in (g - 1, g)])
        if None in windows[0] or windows[0] != windows[1]:
            continue
        if all(sequence == _ONLY_LONG for sequence, _ in windows[0]):
            return g
        if fallback is None:
            fallback = g
    return fallback


@contextlib.contextmanager
def parallel_aac(
    wav: os.PathLike[str] | str,
    beside: os.PathLike[str] | str,
    *,
    muxer: str,
    frames: int,
    sample_rate: int,
    channels: int,
    bitrate: int,
    n_jobs: int | None = None,
) -> Iterator[SplicedAAC | None]:
    """Encode `wav` to AAC in several ffmpeg processes if that pays; yield the spliced stream, then delete it.

    The segment files and the spliced ADTS file are temporary files beside
    `beside` (named by :func:`destatic.media.atomic.partial_path`, so that a
    sweep removes them if this process is killed), removed when the block
    exits, however it exits.

    Parameters
    ----------
    wav : path-like
        A WAV file (PCM seeks to the sample).
    beside : path-like
        The output the temporary files are put beside.
    muxer : str
        The ffmpeg muxer the stream is for; one not in :data:`SPLICE_MUXERS` gets None.
    frames : int
        `wav`'s samples per channel.
    sample_rate : int
        `wav`'s rate, Hz.
    channels : int
        `wav`'s channel count.
    bitrate : int
        Bits per second for every encoder.
    n_jobs : int or None
        Encoders (see :func:`encoder_jobs`); None decides from the length and the CPUs.

    Yields
    ------
    SplicedAAC or None
        None when one encoder is the way: one job, a muxer not in :data:`SPLICE_MUXERS`,
        or no splice point where the encoders agree.

    Raises
    ------
    destatic.errors.BadInputError
        An encoder failed on `wav`.
    destatic.errors.TransientError
        An encoder was killed, could not start, or hit an I/O error.
    """
    jobs = encoder_jobs(frames, sample_rate, channels, n_jobs)
    if jobs < 2 or muxer not in SPLICE_MUXERS:
        yield None
        return
    blocks = -(-frames // FRAME_SAMPLES)
    splits, segments = _plan(blocks, jobs, Path(beside))
    spliced_path = partial_path(Path(beside).with_suffix(".aac"))
    logs = [segment.path.with_suffix(".log") for segment in segments]
    try:
        commands = [_encoder_args(Path(wav), segment, sample_rate=sample_rate, bitrate=bitrate) for segment in segments]
        _run_all(commands, logs, source=wav)
        encoded = [_Packets(segment.path) for segment in segments]
        chosen = []
        for i, split in enumerate(splits):
            g = _choose_splice(encoded[i], encoded[i + 1], split=split, before_first=segments[i].packet_offset, after_first=segments[i + 1].packet_offset)
            if g is None:
                yield None
                return
            chosen.append(g)
        bounds = [0, *chosen, None]
        packets = 0
        with open(spliced_path, "wb") as out:
            for i, segment in enumerate(segments):
                start = bounds[i] - segment.packet_offset
                stop = None if bounds[i + 1] is None else bounds[i + 1] - segment.packet_offset
                packets += encoded[i].copy_to(out, start, stop)
        yield SplicedAAC(spliced_path, packets, frames, sample_rate, tuple(chosen))
    finally:
        for path in (*(segment.path for segment in segments), *logs, spliced_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
