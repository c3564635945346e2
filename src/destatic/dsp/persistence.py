"""What persists over a measured noise: the gain that keeps held notes and room sound where no voice is.

A held note or a room's sound keeps a bin's power over the noise frame after
frame, while the noise's chance peaks average out over
:data:`PERSIST_FRAMES` frames. So where a bin's power averaged over them
stands clear of the noise, the hybrid's classic gain keeps at least that
average's Wiener gain ``1 - N / P``. Two kinds of "over the profile" are not
content, and are left to the classic rule: noise that has grown louder
everywhere (the noise compared with is the profile raised, frame by frame, by
the :data:`PERSIST_QUANTILE` over bins of the averaged power over it, as the
classic rule's tracker lets a measured noise drift), and the bins of the
profile's tones (a separate recording's tones have no phase, so they cannot
be cancelled: what is left there is known noise).

Inside a voice, "persists over the noise" also holds for the noise that
shares bins with speech and for unsteady noise (a copy machine's clatter), so
there the gain is kept only from :data:`PARTIAL_OVER_DB` over the noise, and
only in bins that look like a held partial (:func:`partial_weight`: a peak
over its neighbouring bins that keeps its level, as a bed's notes do and
clatter does not).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PARTIAL_FRAMES", "PARTIAL_OVER_DB", "PARTIAL_SECONDS", "PERSIST_FRAMES", "PERSIST_OVER_DB", "noise_drift", "partial_weight",
    "persistent_gain",
]

PERSIST_FRAMES = 25
"""Frames the input's power is averaged over (chance peaks of steady noise average out, held notes do not)."""
PERSIST_QUANTILE = 0.1
"""The share of bins whose averaged power over the profile sets how far the whole noise has drifted up."""
PERSIST_OVER_DB = 3.0
"""Averaged power this far over the (drifted) noise: the gain starts to be kept; fully from ``+ PERSIST_SPAN_DB``."""
PERSIST_SPAN_DB = 6.0
PARTIAL_OVER_DB = 6.0
"""Inside a voice, averaged power this far over the (drifted) noise starts to be kept, where it looks like a partial."""
PARTIAL_FRAMES = 3
"""Frames the input's power is averaged over before its peakiness and its steadiness are read."""
PARTIAL_NEIGHBOURS = (2, 3, 4)
"""A bin's peakiness is its power over the mean of the bins this far away on both sides."""
PARTIAL_PEAK_DB = 3.0
"""Peakiness (the largest within one bin) from 0 dB to this: a partial from not at all to fully."""
PARTIAL_SPREAD_DB = (15.0, 20.0)
"""The spread of a bin's level over the steadiness span: a partial fully up to the first, not at all from the second."""
PARTIAL_SECONDS = 0.1
"""Either side of a frame: the span over which a partial keeps its level and clatter comes and goes."""


def partial_weight(power: np.ndarray, half_frames: int) -> np.ndarray:
    """How much each bin looks like a held partial: a peak over its neighbouring bins that keeps its level.

    Parameters
    ----------
    power : np.ndarray [shape=(rows, frames + 2 half_frames, bins)]
        The input's power averaged over :data:`PARTIAL_FRAMES` frames, with
        ``half_frames`` frames more on each side than the frames wanted.
    half_frames : int
        Frames either side over which the level's spread is read (:data:`PARTIAL_SECONDS`).

    Returns
    -------
    np.ndarray [shape=(rows, frames, bins)]
        In [0, 1]: the product of a peakiness ramp (the bin, or one next to it,
        0 to :data:`PARTIAL_PEAK_DB` over the mean of its neighbours
        :data:`PARTIAL_NEIGHBOURS` bins away) and a steadiness ramp (the
        spread of its level over ``+- half_frames`` within :data:`PARTIAL_SPREAD_DB`).
    """
    frames = power.shape[1] - 2 * half_frames
    middle = np.ascontiguousarray(power[:, half_frames : half_frames + frames], np.float32)
    reach, bins = max(PARTIAL_NEIGHBOURS), power.shape[-1]
    padded = np.concatenate([np.repeat(middle[..., :1], reach, -1), middle, np.repeat(middle[..., -1:], reach, -1)], axis=-1)
    around = np.zeros_like(middle)
    for k in PARTIAL_NEIGHBOURS:
        around += padded[..., reach + k : reach + k + bins]
        around += padded[..., reach - k : reach - k + bins]
    ratio = (middle + np.float32(1e-30)) / (around / np.float32(2 * len(PARTIAL_NEIGHBOURS)) + np.float32(1e-30))
    peaky = _ramp_db(ratio, 0.0, PARTIAL_PEAK_DB)
    near = np.concatenate([peaky[..., :1], peaky, peaky[..., -1:]], axis=-1)  # the largest within one bin
    peaky = np.maximum(np.maximum(near[..., :-2], near[..., 1:-1]), near[..., 2:])
    steady = np.asarray(power, np.float32)
    highest, lowest = steady[:, :frames].copy(), steady[:, :frames].copy()
    for k in range(1, 2 * half_frames + 1):
        np.maximum(highest, steady[:, k : k + frames], out=highest)
        np.minimum(lowest, steady[:, k : k + frames], out=lowest)
    low, high = PARTIAL_SPREAD_DB
    spread = (highest + np.float32(1e-30)) / (lowest + np.float32(1e-30))
    return peaky * (1 - _ramp_db(spread, low, high - low))


def _ramp_db(ratio: np.ndarray, start_db: float, span_db: float) -> np.ndarray:
    """``clip((10 log10(ratio) - start_db) / span_db, 0, 1)``, the ``log10`` taken only where the ramp is not flat."""
    out = (ratio >= np.float32(10 ** ((start_db + span_db) / 10))).astype(np.float32)
    within = (ratio > np.float32(10 ** (start_db / 10))) & (out == 0)
    out[within] = (10 * np.log10(ratio[within]) - np.float32(start_db)) / np.float32(span_db)
    return out


def noise_drift(power: np.ndarray, noise_power: np.ndarray) -> np.ndarray:
    """How far a measured noise has grown, frame by frame: how far the whole spectrum stands over the profile.

    Parameters
    ----------
    power : np.ndarray [shape=(rows, frames, bins)]
        The input's power averaged over :data:`PERSIST_FRAMES` frames centred on each frame.
    noise_power : np.ndarray [shape=(rows, bins)]
        The measured profile's noise power.

    Returns
    -------
    np.ndarray [shape=(rows, frames)]
        The :data:`PERSIST_QUANTILE` over bins of ``power`` over the profile, at least 1: a
        voice, a bed or a tone fills too few bins to raise it, noise grown louder everywhere does.
    """
    profile = np.maximum(noise_power[:, np.newaxis, :], 1e-30)
    return np.maximum(np.quantile(power / profile, PERSIST_QUANTILE, axis=-1), 1.0)


def persistent_gain(power: np.ndarray, noise_power: np.ndarray, free: np.ndarray,
                    over_db: tuple[float, ...] = (PERSIST_OVER_DB,), drift: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The Wiener gain of averaged power where it persists over the noise and the noise has not simply grown.

    Parameters
    ----------
    power : np.ndarray [shape=(rows, frames, bins)]
        The input's power averaged over :data:`PERSIST_FRAMES` frames centred on each frame.
    noise_power : np.ndarray [shape=(rows, bins)]
        The measured profile's noise power.
    free : np.ndarray [shape=(bins,), dtype=bool]
        False in the bins of the profile's tones (never kept).
    over_db : tuple of float
        Where the weight starts, dB over the drifted noise (:data:`PERSIST_OVER_DB`;
        :data:`PARTIAL_OVER_DB` inside a voice): one gain for each, from one
        estimate of the drift.
    drift : np.ndarray [shape=(rows, frames)] or None
        :func:`noise_drift` of these powers, if the caller has it already.

    Returns
    -------
    tuple of np.ndarray [shape=(rows, frames, bins)]
        For each of `over_db`, ``1 - N / P`` weighted 0 at ``over_db`` over the drifted noise ``N``
        to 1 six dB higher; 0 where ``free`` is False.
    """
    profile = np.maximum(noise_power[:, np.newaxis, :], 1e-30)
    drift = noise_drift(power, noise_power) if drift is None else drift
    noise = profile * drift[..., np.newaxis]
    over = 10 * np.log10(power / noise + 1e-12)
    wiener = np.clip(1 - noise / np.maximum(power, 1e-30), 0, 1) * free
    return tuple(np.clip((over - start) / PERSIST_SPAN_DB, 0, 1) * wiener for start in over_db)
