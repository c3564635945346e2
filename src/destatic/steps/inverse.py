"""Inverse STFT: the stored gains applied to the same frames, overlap-added back to samples.

Zero delay and exactly the input's length, so the cleaned audio lines up
sample for sample with the original (and with its video).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from destatic import dsp, media
from destatic.steps.records import AudioFile, Gains, ProfiledNoise

__all__ = ["run"]


def run(
    audio: AudioFile,
    gains: Gains,
    noise: ProfiledNoise,
    target: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> AudioFile:
    """Apply `gains` to `audio` and write the cleaned audio to `target`, a float32 WAV (atomically).

    Each channel's thread reads its audio and its gains block by block; the
    cleaned blocks are written here as they come.

    Parameters
    ----------
    audio : AudioFile
        The extracted audio the gains were computed for.
    gains : Gains
        The subtract step's gains file.
    noise : ProfiledNoise
        The profile the gains were computed with (its framing and tones).
    target : Path
        The WAV to write.
    on_progress : callable or None
        ``on_progress(samples_written, samples)`` after each block.

    Returns
    -------
    AudioFile
        The cleaned audio.
    """
    cleaned = dsp.apply_gains_by_group(
        functools.partial(media.wav_blocks, audio.path),
        functools.partial(dsp.read_gain_rows, gains.path),
        audio.channels,
        audio.sample_rate,
        profile=noise.profile,
        n_jobs=dsp.jobs_for_length(audio.frames, audio.sample_rate),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial:
        with media.float_wav_writer(partial, audio.sample_rate, audio.channels) as out:
            written = 0
            for block in cleaned:
                out.write(block)
                written += len(block)
                if on_progress is not None:
                    on_progress(written, audio.frames)
    return AudioFile(path=target, sample_rate=audio.sample_rate, channels=audio.channels, frames=audio.frames)
