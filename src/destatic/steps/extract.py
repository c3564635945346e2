"""Extract: decode the audio of a video or audio file to a float32 WAV, nothing changed.

Native rate and channel count, exactly the samples a player would play; the
stream's offset in its container and the probe of the file go into the
record, for the remux to put the cleaned audio back in sync.

:func:`start_ahead` begins the decoding in a thread before the step is run
(``destatic run`` does, while Prefect loads); the step's :func:`run` then
takes that decoding's record instead of decoding again (:mod:`.ahead`).
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

from destatic import cache, media
from destatic.steps import ahead
from destatic.steps.records import ExtractedAudio

__all__ = ["BY_CONTENT", "SUFFIX", "run", "start_ahead", "target_in"]

SUFFIX = ".wav"
BY_CONTENT = ("source",)
"""The step's artifact: a WAV, named by the cache key of its inputs, the source counted by its bytes (the task's cache policy)."""

def target_in(work_dir: Path, source: Path, *, stream: int | None = None) -> Path:
    """The step's WAV for `source` in `work_dir`, named as the task names it (:data:`SUFFIX`, :data:`BY_CONTENT`)."""
    return cache.artifact_path("extract", {"source": source, "work_dir": work_dir, "stream": stream}, SUFFIX, content=BY_CONTENT)


def run(source: Path, target: Path, *, stream: int | None = None) -> ExtractedAudio:
    """Decode one audio stream of `source` into the WAV `target` (written atomically).

    A decoding of the same target begun by :func:`start_ahead` is waited
    for and its record returned; if it failed, `source` is decoded here
    (and its error, if any, is this call's).

    Parameters
    ----------
    source : Path
        A video or audio file.
    target : Path
        The WAV to write; its folder is made if needed.
    stream : int or None
        Index of the audio stream in `source`; None takes the default one.

    Returns
    -------
    ExtractedAudio

    Raises
    ------
    destatic.errors.BadInputError
        Not media, corrupt, truncated, or no audio.
    destatic.errors.TransientError
        ffmpeg killed, disk full or another I/O error.
    """
    begun: ExtractedAudio | None = ahead.taken("extract", target)
    return begun or _decode(source, target, stream=stream)


def _decode(source: Path, target: Path, *, stream: int | None) -> ExtractedAudio:
    target.parent.mkdir(parents=True, exist_ok=True)
    track = media.extract_audio(source, target, stream=stream)
    return ExtractedAudio(
        path=track.path,
        sample_rate=track.sample_rate,
        channels=track.channels,
        frames=track.frames,
        source=track.source,
        stream=track.stream,
        offset=track.offset,
    )


def start_ahead(source: Path, work_dir: Path, *, time_limit_s: float | None = None) -> Future[Any] | None:
    """Begin decoding the default audio stream of `source` into its step's WAV in `work_dir`, in a thread.

    Nothing is begun (None) when that WAV exists already (an earlier run's)
    or is being decoded. The decoding runs with ffmpeg's time limit
    `time_limit_s` (None: derived from the file, as for the step); its future
    gives the WAV and its record (:data:`destatic.steps.ahead.Made`).
    """
    target = target_in(work_dir, source)
    if target.is_file():
        return None

    def decode() -> ahead.Made:
        with media.time_limit(time_limit_s):
            return target, _decode(source, target, stream=None)

    return ahead.begin("extract", work_dir, decode)
