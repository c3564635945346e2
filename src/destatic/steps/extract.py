"""Extract: decode the audio of a video or audio file to a float32 WAV, nothing changed.

Native rate and channel count, exactly the samples a player would play; the
stream's offset in its container and the probe of the file go into the
record, for the remux to put the cleaned audio back in sync.
"""

from __future__ import annotations

from pathlib import Path

from destatic import media
from destatic.steps.records import ExtractedAudio

__all__ = ["run"]


def run(source: Path, target: Path, *, stream: int | None = None) -> ExtractedAudio:
    """Decode one audio stream of `source` into the WAV `target` (written atomically).

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
