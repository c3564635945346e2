"""Residue: what the cleaning took out of the audio (the input minus the cleaned audio), sample for sample.

For listening to what was removed, as Audacity's "Residue" does; the
pipeline encodes it like the output (the same container, or the same audio
format) and delivers it beside it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from destatic import media
from destatic.errors import InternalError
from destatic.steps.records import AudioFile

__all__ = ["run"]


def run(audio: AudioFile, cleaned: AudioFile, target: Path) -> AudioFile:
    """Write ``audio - cleaned`` to `target`, a float32 WAV of the same length and channels (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial:
        with media.float_wav_writer(partial, audio.sample_rate, audio.channels) as out:
            for before, after in itertools.zip_longest(media.wav_blocks(audio.path), media.wav_blocks(cleaned.path)):
                if before is None or after is None or before.shape != after.shape:
                    raise InternalError(f"{cleaned.path.name} is not as long as {audio.path.name}: no residue")
                out.write(before - after)
    return AudioFile(path=target, sample_rate=audio.sample_rate, channels=audio.channels, frames=audio.frames)
