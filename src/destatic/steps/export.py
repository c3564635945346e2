"""Export: the cleaned audio alone, in an audio format (wav, flac, mp3, m4a, ogg, opus).

Lossless by default (float WAV, 24-bit FLAC); lossy formats at transparent
rates.
"""

from __future__ import annotations

from pathlib import Path

from destatic import media
from destatic.steps.records import AudioFile, Encoded

__all__ = ["run"]


def run(cleaned: AudioFile, target: Path, format: media.AudioFormat) -> Encoded:
    """Encode `cleaned` as `format` into `target` (written atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    media.export_audio(cleaned.path, target, format=format)
    return Encoded(path=target)
