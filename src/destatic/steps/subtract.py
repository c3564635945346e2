"""Subtract: the suppression gain of every frequency bin of every STFT frame, from the noise profile.

The gains (what the noise leaves of each bin) are written to a gains file,
not applied here: the inverse STFT step applies them, so that changing only
the reduction re-runs from here and the heavy analysis stays cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from destatic import dsp, media
from destatic.errors import InternalError
from destatic.steps.records import AudioFile, Gains, ProfiledNoise

__all__ = ["run"]


def run(
    audio: AudioFile,
    noise: ProfiledNoise,
    target: Path,
    method: str | None,
    options: dsp.SuppressionOptions,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> Gains:
    """Compute the gains of `audio` with `noise`'s profile into the gains file `target` (written atomically).

    Each channel's thread (one per channel on audio of 30 s or more) reads the
    audio block by block and writes its channel's rows in place, so resident
    memory does not grow with duration.

    Parameters
    ----------
    audio : AudioFile
        The extracted audio.
    noise : ProfiledNoise
        Its noise profile.
    target : Path
        ``.npy`` to write (:mod:`destatic.dsp.gain_file`).
    method : str or None
        The suppression method (``None``: the default, :func:`destatic.dsp.resolve_method`).
    options : SuppressionOptions
        The method's option record, as the settings build it (:meth:`destatic.settings.SuppressionSettings.options`).
    on_progress : callable or None
        ``on_progress(frames_done, frames)`` after each chunk.

    Returns
    -------
    Gains
    """
    shape = dsp.gain_shape(audio.frames, noise.profile.for_channels(audio.channels))
    dtype = dsp.gain_dtype(method)
    target.parent.mkdir(parents=True, exist_ok=True)
    with media.atomic_output(target) as partial, open(partial, "w+b") as out:
        writer = dsp.GainFileWriter(out, shape, dtype)
        done = 0
        for done in dsp.compute_gains_by_group(
            functools.partial(media.wav_blocks, audio.path),
            audio.channels,
            audio.sample_rate,
            noise.profile,
            writer.store,
            method=method,
            n_jobs=dsp.jobs_for_length(audio.frames, audio.sample_rate),
            suppression=options,
        ):
            if on_progress is not None:
                on_progress(done, shape[1])
        if done != shape[1]:
            raise InternalError(f"compute_gains gave {done} frames, frame_count said {shape[1]}")
    return Gains(path=target, shape=shape, dtype=dtype.name)
