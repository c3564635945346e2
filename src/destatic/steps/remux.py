"""Remux: the original container again with the cleaned audio in place of the old, every other stream copied.

The video is copied packet for packet (never re-encoded), the cleaned audio
is encoded in the original's codec where the container takes it and placed
at the original stream's offset, so A/V sync is kept.
"""

from __future__ import annotations

from pathlib import Path

from destatic import media
from destatic.steps.records import AudioFile, Encoded, ExtractedAudio

__all__ = ["run"]


def run(source: Path, extracted: ExtractedAudio, cleaned: AudioFile, target: Path) -> Encoded:
    """Write `source` to `target` with its audio stream replaced by `cleaned`.

    Parameters
    ----------
    source : Path
        The input file (where it is now: a cached `extracted` may have been
        made from the same bytes elsewhere).
    extracted : ExtractedAudio
        The extract step's record of `source`: its probe and stream.
    cleaned : AudioFile
        The inverse step's cleaned audio.
    target : Path
        The output, with the source's suffix; written atomically.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    media.remux(source, cleaned.path, target, stream=extracted.stream, original_info=extracted.source, offset_s=extracted.offset)
    return Encoded(path=target)
