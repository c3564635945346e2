"""The hybrid's mixing rule, compiled (numba): the classic gain moved towards the learned one, frame by frame.

:class:`destatic.dsp.learned.LearnedGainComputer` defines the rule and its
constants; this loop computes it without numpy's temporaries, in numpy's
arithmetic and order, so the gains are the same to the bit (the numpy
formulation is the test oracle, ``tests/dsp/dsp_reference.py``). Where a
clipped ramp is saturated, the ``log10`` behind it is skipped. A bin's band
median is selected only where it can change the result and counting the
band's bins against the levels that saturate the ramp (or against the
profile's noise) leaves it open: 1.6 % of the bins of speech over an air
conditioner, where 8 % were selected before. The ``exp`` is vectorised (:func:`~destatic.dsp._numba.exp_to_float32`,
libm's bits). Compiled and cached as :mod:`destatic.dsp._kernels` is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from destatic.dsp._kernels import _kth_smallest
from destatic.dsp._numba import compiled, exp_to_float32

__all__ = ["MixConstants", "hybrid_mix"]


class MixConstants(NamedTuple):
    """The constants of :func:`hybrid_mix`: the hybrid's mixing rule, defined in :mod:`destatic.dsp.learned`."""

    voice_mix: np.float32
    noisy_span: np.float32
    steady_frames: int
    steady_over_db: float
    steady_span_db: float
    tone_frames: int
    tone_width: int
    tone_over_db: float
    tone_span_db: float
    noise_removed_over_db: float
    noise_removed_span_db: float
    lowering_floor: np.float32


@compiled
def _centred_mean_row(values, factor, frame, frames, out, squared_factor=False):
    """Mean over ``frames`` frames centred on ``frame`` of ``values`` (rows of float32), each times ``1 - factor`` (None: 1),
    squared; with ``squared_factor``, ``values^2 (1 - factor^2)`` instead.

    Frames past either end repeat the end frame. float32 throughout, summed in order, as numpy's mean over a window.
    """
    last = values.shape[0] - 1
    half = frames // 2
    count = np.float32(frames)
    for b in range(out.shape[0]):
        out[b] = np.float32(0.0)
    for k in range(frames):
        f = min(max(frame - half + k, 0), last)
        row = values[f]
        if factor is None:
            for b in range(out.shape[0]):
                out[b] += row[b] * row[b]
        elif squared_factor:
            weights = factor[f]
            for b in range(out.shape[0]):
                out[b] += row[b] * row[b] * (np.float32(1.0) - weights[b] * weights[b])
        else:
            weights = factor[f]
            for b in range(out.shape[0]):
                v = row[b] * (np.float32(1.0) - weights[b])
                out[b] += v * v
    for b in range(out.shape[0]):
        out[b] = out[b] / count


@compiled
def _median_around(values, b, window):
    """The median of the ``window.shape[0]`` (odd) bins of ``values`` centred on bin ``b``, the edge bins repeated outwards."""
    width = window.shape[0]
    last = values.shape[0] - 1
    for k in range(width):
        window[k] = values[min(max(b + k - width // 2, 0), last)]
    return _kth_smallest(window, width // 2)


@compiled
def _median_beyond(values, b, width, floor, low, high):
    """Where the median of the ``width`` (odd) bins of ``values`` centred on bin ``b`` (edge bins repeated) lies, as
    far as a count tells: 2 if at most ``floor``, 1 if at least ``high``, -1 if at most ``low``, 0 if not known.

    Counting needs no reordering: far cheaper than :func:`_median_around` where it is enough.
    """
    last = values.shape[0] - 1
    reach = under = under_floor = 0
    for k in range(width):
        value = np.float64(values[min(max(b + k - width // 2, 0), last)])
        reach += value >= high
        under += value <= low
        under_floor += value <= floor
    half = width // 2
    return 2 if under_floor > half else (1 if reach > half else (-1 if under > half else 0))


@compiled
def _saturation(start_db, span_db):
    """The power ratios safely (1e-9) below and above which :func:`_ramp` is 0 and 1 without a ``log10``."""
    return 10.0 ** (start_db / 10.0) * (1.0 - 1e-9), 10.0 ** ((start_db + span_db) / 10.0) * (1.0 + 1e-9)


@compiled
def _ramp(ratio, start_db, span_db, limits):
    """``clip((10 log10(ratio) - start_db) / span_db, 0, 1)``, numpy's float64 arithmetic; ``limits`` from :func:`_saturation`."""
    if ratio < limits[0]:
        return 0.0
    if ratio > limits[1]:
        return 1.0
    return min(max((10.0 * np.log10(ratio) - start_db) / span_db, 0.0), 1.0)


@compiled
def hybrid_mix(classic, log_classic, log_learned, magnitude, learned, first, noise, drift, voice, region, lowered, constants,
               out):
    """The hybrid's gains: ``exp(log G)``, ``log G = log Gc + w (log L - log Gc)``, ``w = voice_mix max(v noisy, region
    steady) (1 - tone)``; then, in the bins of ``lowered`` (bins, bool) where ``log L' < log G``, ``log G`` moves
    ``region noise_only`` of the way to ``log L'``, ``noise_only`` being 1 where the power DFN3 removes is no more than the
    profile's noise raised by the frame's ``drift`` (rows, frames: how far the noise has grown) and ``L'`` the learned
    gain no lower than ``lowering_floor`` (the log of the classic gain's floor).

    ``classic``, ``log_classic`` and ``out`` are (channels, frames, bins); ``log_learned``, ``voice``
    and ``region`` have a row per learned pass (one for the mid channel of stereo, or one per channel),
    ``magnitude`` and ``learned`` (rows, kept frames, bins) hold the input's magnitude and the learned
    gain around these frames, the first of them at ``first``; ``noise`` (rows, bins) is the profile's
    power. ``steady`` and ``tone`` are read from the mean powers over a few frames around each frame,
    ``tone`` against their median over neighbouring bins. The arithmetic is numpy's, in its order and
    types (the logs of float32 come in, computed by numpy), so the gains are numpy's to the bit.
    """
    channels, frames, bins = out.shape
    rows = log_learned.shape[0]
    power = np.empty(bins, np.float32)
    removed = np.empty(bins, np.float32)
    window = np.empty(constants.tone_width, np.float32)
    steady = np.empty(bins, np.float64)
    noise_removed = np.empty(bins, np.float32)
    noise_only = np.empty(bins, np.float64)
    removed_limits = _saturation(constants.noise_removed_over_db, constants.noise_removed_span_db)
    any_lowered = lowered.any()
    tone_free = np.empty(bins, np.float64)
    exponent = np.empty(bins, np.float64)
    voice_mix = np.float64(constants.voice_mix)
    steady_limits = _saturation(constants.steady_over_db, constants.steady_span_db)
    tone_limits = _saturation(constants.tone_over_db, constants.tone_span_db)
    for r in range(rows):
        for t in range(frames):
            _centred_mean_row(magnitude[r], None, first + t, constants.steady_frames, power)
            _centred_mean_row(magnitude[r], learned[r], first + t, constants.tone_frames, removed)
            lowering = any_lowered and region[r, t] > 0  # else the step below moves nothing: skipped, exactly
            if lowering:
                _centred_mean_row(magnitude[r], learned[r], first + t, constants.steady_frames, noise_removed, True)
            for b in range(bins):
                ratio = np.float64(power[b]) / max(noise[r, b], 1e-30) + 1e-12
                steady[b] = 1.0 - _ramp(ratio, constants.steady_over_db, constants.steady_span_db, steady_limits)
                if lowering and lowered[b]:
                    ratio = max(np.float64(noise_removed[b]), 1e-30) / max(noise[r, b] * drift[r, t], 1e-30)
                    noise_only[b] = 1.0 - _ramp(ratio, constants.noise_removed_over_db, constants.noise_removed_span_db,
                                                removed_limits)
                lifted = np.float64(removed[b] + np.float32(1e-30))
                if lifted / (noise[r, b] + 1e-30) < tone_limits[0]:  # the band's median can only lower this ratio
                    tone_free[b] = 1.0
                    continue
                # Levels of the median that put the ratio below and above the ramp (checked exactly): often enough to know.
                high, low = lifted / tone_limits[0] * (1.0 + 1e-6), lifted / tone_limits[1] * (1.0 - 1e-6)
                side = _median_beyond(removed, b, constants.tone_width, noise[r, b], low, high)
                if side == 2:  # the ground is the profile's noise
                    ratio = lifted / (noise[r, b] + 1e-30)
                    tone_free[b] = 1.0 - _ramp(ratio, constants.tone_over_db, constants.tone_span_db, tone_limits)
                    continue
                if side == 1 and lifted / (max(high, noise[r, b]) + 1e-30) < tone_limits[0]:
                    tone_free[b] = 1.0
                    continue
                if side == -1 and lifted / (max(low, noise[r, b]) + 1e-30) > tone_limits[1]:
                    tone_free[b] = 0.0
                    continue
                ratio = lifted / (max(np.float64(_median_around(removed, b, window)), noise[r, b]) + 1e-30)
                tone_free[b] = 1.0 - _ramp(ratio, constants.tone_over_db, constants.tone_span_db, tone_limits)
            for c in range(channels):
                if rows != 1 and c != r:
                    continue
                for b in range(bins):
                    g = classic[c, t, b]
                    noisy = min(max((np.float32(1.0) - g) / constants.noisy_span, np.float32(0.0)), np.float32(1.0))
                    weight = max(np.float64(voice[r, t] * noisy), np.float64(region[r, t]) * steady[b])
                    weight = voice_mix * weight * tone_free[b]
                    step = np.float64(log_learned[r, t, b] - log_classic[c, t, b])
                    mixed = np.float64(log_classic[c, t, b]) + weight * step
                    target = np.float64(max(log_learned[r, t, b], constants.lowering_floor))
                    if lowering and lowered[b] and target < mixed:
                        mixed = mixed + np.float64(region[r, t]) * noise_only[b] * (target - mixed)
                    exponent[b] = mixed
                exp_to_float32(exponent, out[c, t])
