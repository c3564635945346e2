"""A/V sync checks: generated files of every codec and container remux writes, and the audio's lag.

The lag is measured as a player sees it, with bare ffmpeg (not destatic.media):
each decoded audio frame is placed on the file's timeline at its own
presentation timestamp (``-copyts``: edit lists, encoder priming, pre-skip and
start offsets all as the demuxer and decoder state them), relative to the
first presented video frame (or to the timeline's zero in a file without
video). The lag of an output against its original is then the shift that best
aligns the two placed signals (the peak of their cross-correlation): positive
when the output's audio plays late against its video.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from media_checks import decode_frames, ffmpeg_bin

MAX_LAG_S = 0.5
"""Widest lag searched, either way."""

LEAD_S = 1.0
"""Audio placed up to this long before the video's first frame is kept (audio may start first)."""

# Container suffix -> the video encoder arguments of generated sources (small and fast).
_VIDEO = {
    ".mpg": ["-c:v", "mpeg1video", "-b:v", "600k"],
    ".ts": ["-c:v", "mpeg2video", "-b:v", "600k"],
    ".avi": ["-c:v", "mpeg4", "-q:v", "5"],
    ".webm": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"],
}
_H264 = ["-c:v", "libx264", "-preset", "ultrafast"]
_H264_BFRAMES = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"]

# Audio codec -> encoder arguments of generated sources, given the channel count.
_AUDIO = {
    "mp2": lambda ch: ["-c:a", "mp2", "-b:a", "224k" if ch == 2 else "128k"],
    "mp3": lambda ch: ["-c:a", "libmp3lame", "-b:a", "128k"],
    "aac": lambda ch: ["-c:a", "aac", "-b:a", "128k"],
    "ac3": lambda ch: ["-c:a", "ac3", "-b:a", "192k"],
    "eac3": lambda ch: ["-c:a", "eac3", "-b:a", "192k"],
    "opus": lambda ch: ["-c:a", "libopus", "-b:a", "96k"],
    "vorbis": lambda ch: ["-c:a", "libvorbis", "-q:a", "4"],
    "flac": lambda ch: ["-c:a", "flac"],
    "pcm_s16le": lambda ch: ["-c:a", "pcm_s16le"],
}

PAIRS: tuple[tuple[str, str], ...] = (
    (".mpg", "mp2"), (".mpg", "mp3"), (".mpg", "ac3"),
    (".mp4", "aac"), (".mp4", "mp3"), (".mp4", "ac3"), (".mp4", "eac3"), (".mp4", "opus"), (".mp4", "flac"),
    (".mov", "aac"), (".mov", "mp3"), (".mov", "ac3"), (".mov", "pcm_s16le"),
    (".mkv", "aac"), (".mkv", "mp3"), (".mkv", "mp2"), (".mkv", "ac3"), (".mkv", "opus"), (".mkv", "vorbis"), (".mkv", "flac"),
    (".webm", "opus"), (".webm", "vorbis"),
    (".ts", "aac"), (".ts", "mp2"), (".ts", "mp3"), (".ts", "ac3"), (".ts", "opus"),
    (".avi", "mp3"), (".avi", "ac3"), (".avi", "mp2"),
    (".m4a", "aac"), (".mp3", "mp3"), (".ogg", "vorbis"), (".ogg", "opus"), (".opus", "opus"),
)
"""(container suffix, audio codec) of every source kind generated: each codec remux keeps in each container."""

AUDIO_ONLY = (".m4a", ".mp3", ".ogg", ".opus")


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated source file.

    Attributes
    ----------
    suffix : str
        Container, by its suffix.
    codec : str
        Audio codec.
    sample_rate : int
        Hz (Opus: always 48000, the rate its encoder takes).
    channels : int
    extra : int
        Samples added to whole seconds of audio (lengths that are no multiple of any frame size).
    audio_offset : float
        Seconds the audio starts after the video (negative: before).
    bframes : bool
        H.264 video with B-frames (a negative first DTS and an edit list in mp4/mov).
    seconds : int
        Whole seconds of audio (``extra`` samples more); the video lasts as long.
    """

    suffix: str
    codec: str
    sample_rate: int = 44100
    channels: int = 2
    extra: int = 517
    audio_offset: float = 0.0
    bframes: bool = False
    seconds: int = 3

    @property
    def name(self) -> str:
        offset = f"{self.audio_offset:+.3f}".replace(".", "p")
        return f"{self.suffix[1:]}-{self.codec}-{self.sample_rate}-{self.channels}ch-x{self.extra}-off{offset}{'-bf' if self.bframes else ''}{'' if self.seconds == 3 else f'-{self.seconds}s'}"


def grid(pairs: tuple[tuple[str, str], ...] = PAIRS) -> Iterator[Case]:
    """Every pair at 32, 44.1 and 48 kHz, mono and stereo, two lengths and three audio offsets."""
    for (suffix, codec), rate, channels, extra, offset in itertools.product(
        pairs, (32000, 44100, 48000), (1, 2), (517, 1151), (0.0, 0.137, -0.2)
    ):
        if codec == "opus" and rate != 48000:
            continue
        if suffix in AUDIO_ONLY and offset:
            continue
        yield Case(suffix, codec, rate, channels, extra, offset, bframes=extra == 1151 and suffix in (".mp4", ".mov", ".mkv"))


def fast_grid() -> list[Case]:
    """A representative subset: each pair once, rates, channels, lengths and offsets taken in turn."""
    rates, offsets = (44100, 32000, 48000), (0.0, -0.2, 0.137)
    cases = []
    for i, (suffix, codec) in enumerate(PAIRS):
        rate = 48000 if codec == "opus" else rates[i % 3]
        offset = 0.0 if suffix in AUDIO_ONLY else offsets[(i // 3) % 3]
        cases.append(Case(suffix, codec, rate, 1 + i % 2, (517, 1151, 3)[i % 3], offset, bframes=i % 4 == 1 and suffix in (".mp4", ".mov", ".mkv")))
    return cases


def _run(*args: str | bytes | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([ffmpeg_bin(), "-hide_banner", "-nostdin", *args], capture_output=True, check=False)
    assert done.returncode == 0 or not check, done.stderr.decode("utf-8", "replace")[-3000:]
    return done


def noise_signal(sample_rate: int, channels: int, frames: int, *, seed: int) -> np.ndarray:
    """Noise under a slow random envelope, independent per channel: one sharp cross-correlation peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / sample_rate
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(2, 5, channels) * t + rng.uniform(0, 2 * np.pi, channels))
    return (0.25 * envelope * rng.standard_normal((frames, channels))).astype(np.float32)


def make_source(case: Case, folder: Path, *, seed: int = 0) -> Path:
    """Write `case` with bare ffmpeg: a test pattern (unless audio only) and :func:`noise_signal` audio."""
    frames = case.seconds * case.sample_rate + case.extra
    wav = folder / f"{case.name}.signal.wav"
    sf.write(wav, noise_signal(case.sample_rate, case.channels, frames, seed=seed), case.sample_rate, subtype="FLOAT")
    out = folder / f"{case.name}{case.suffix}"
    audio = ["-itsoffset", f"{max(case.audio_offset, 0):.6f}", "-i", wav]
    codec = [*_AUDIO[case.codec](case.channels), "-ar", str(case.sample_rate), "-ac", str(case.channels)]
    if case.suffix in AUDIO_ONLY:
        _run("-v", "error", "-i", wav, *codec, "-y", out)
        return out
    duration = case.seconds + abs(case.audio_offset) + 0.2
    video = ["-itsoffset", f"{max(-case.audio_offset, 0):.6f}", "-f", "lavfi", "-i", f"testsrc=size=160x128:rate=25:duration={duration:.3f}"]
    encoder = _VIDEO.get(case.suffix, _H264_BFRAMES if case.bframes else _H264)
    _run("-v", "error", *video, *audio, "-map", "0:v", "-map", "1:a", *encoder, *codec, "-y", out)
    return out


def first_video_time(path: os.PathLike[str] | str) -> float | None:
    """Seconds on the file's timeline at which its first video frame is shown; None without video."""
    text = _run("-copyts", "-i", path, "-map", "0:V:0?", "-vf", "settb=1/1000000,showinfo", "-fps_mode", "passthrough",
                "-frames:v", "1", "-f", "null", "-", check=False).stderr.decode("utf-8", "replace")
    match = re.search(r"\] n:\s*0 pts:\s*(-?\d+)", text)
    return int(match.group(1)) / 1e6 if match else None


def placed_audio(path: os.PathLike[str] | str, *, origin: float) -> tuple[np.ndarray, int]:
    """The first audio stream as a player places it: mono, sample 0 at `origin` - :data:`LEAD_S` seconds.

    Each decoded frame is written at its own presentation timestamp, so gaps,
    overlaps and start offsets show as they would play.
    """
    samples, frames, rate = decode_frames(path)
    mono = samples.mean(axis=1, dtype=np.float64)
    start = round((origin - LEAD_S) * rate)
    placed = np.zeros(max(max(pts + n for pts, n in frames) - start, 1))
    used = 0
    for pts, n in frames:
        begin, chunk = pts - start, mono[used : used + n]
        used += n
        if begin + n > 0:
            placed[max(begin, 0) : begin + n] = chunk[max(-begin, 0) :]
    return placed, rate


def timeline_origin(path: os.PathLike[str] | str) -> float:
    """The first video frame's time, or 0 (the timeline's zero) for audio alone."""
    first = first_video_time(path)
    return 0.0 if first is None else first


def audio_lag(original: os.PathLike[str] | str, output: os.PathLike[str] | str) -> float:
    """Seconds by which `output`'s audio plays later against its video than `original`'s (negative: earlier).

    Files without video are compared on their timelines from zero.
    """
    reference, rate = placed_audio(original, origin=timeline_origin(original))
    test, test_rate = placed_audio(output, origin=timeline_origin(output))
    assert rate == test_rate, f"sample rate changed: {rate} -> {test_rate}"
    return correlation_lag(reference, test, rate)


def correlation_lag(reference: np.ndarray, test: np.ndarray, rate: int) -> float:
    """Seconds `test` is delayed against `reference`: the cross-correlation peak within :data:`MAX_LAG_S`,
    refined to a fraction of a sample by a parabola through the peak and its neighbours."""
    reach = int(MAX_LAG_S * rate)
    scores = scipy.signal.correlate(test, reference, mode="full", method="fft")
    zero = len(reference) - 1
    low, high = max(zero - reach, 1), min(zero + reach + 1, len(scores) - 1)
    peak = low + int(np.argmax(scores[low:high]))
    left, centre, right = scores[peak - 1 : peak + 2]
    bend = left - 2 * centre + right
    fraction = 0.5 * (left - right) / bend if bend < 0 else 0.0
    return (peak - zero + fraction) / rate


def video_shift(original: os.PathLike[str] | str, output: os.PathLike[str] | str) -> float | None:
    """Seconds by which `output`'s first video frame is shown later on its timeline than `original`'s."""
    before, after = first_video_time(original), first_video_time(output)
    return None if before is None or after is None else after - before
