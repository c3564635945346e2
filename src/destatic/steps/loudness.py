"""Loudness: the cleaned audio brought to an integrated loudness (EBU R128), under a true-peak ceiling.

Suppression takes energy out, so the voice can sound quieter than the noisy
original. This optional step applies one gain to the whole file: the one
that reaches the target loudness, or less where the true peak would pass the
ceiling (no limiter: the sound is not changed, only its level, and it stays
sample-aligned). The loudness is measured by ffmpeg's ``ebur128`` filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from destatic import media
from destatic.steps.records import AudioFile, Leveled

__all__ = ["gain_for", "run"]


def gain_for(loudness: media.Loudness, *, target_lufs: float, ceiling_dbtp: float) -> tuple[float, bool]:
    """The gain in dB that brings `loudness` to `target_lufs` without its true peak passing `ceiling_dbtp`; and whether the ceiling set it.

    Silence (no integrated loudness) gets no gain.
    """
    if loudness.integrated_lufs is None:
        return 0.0, False
    gain = target_lufs - loudness.integrated_lufs
    if loudness.true_peak_dbtp is not None and loudness.true_peak_dbtp + gain > ceiling_dbtp:
        return ceiling_dbtp - loudness.true_peak_dbtp, True
    return gain, False


def run(audio: AudioFile, cleaned: AudioFile, target: Path, *, target_lufs: float, ceiling_dbtp: float) -> Leveled:
    """Write `cleaned` brought to `target_lufs` (see :func:`gain_for`) to `target`, a float32 WAV (atomically).

    Parameters
    ----------
    audio : AudioFile
        The input's audio, measured for the report.
    cleaned : AudioFile
        The inverse step's output.
    target : Path
        The WAV to write.
    target_lufs, ceiling_dbtp : float
        The loudness to reach and the true peak not to pass.
    """
    before = media.measure_loudness(cleaned.path)
    gain_db, limited = gain_for(before, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp)
    scale = np.float32(10 ** (gain_db / 20))
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial:
        with media.float_wav_writer(partial, cleaned.sample_rate, cleaned.channels) as out:
            for block in media.wav_blocks(cleaned.path):
                out.write(block * scale)
        after = media.measure_loudness(partial)
    return Leveled(
        path=target,
        sample_rate=cleaned.sample_rate,
        channels=cleaned.channels,
        frames=cleaned.frames,
        target_lufs=target_lufs,
        ceiling_dbtp=ceiling_dbtp,
        gain_db=gain_db,
        peak_limited=limited,
        original=media.measure_loudness(audio.path),
        before=before,
        after=after,
    )
