"""Issue 30's search for the hybrid's mixing rule: candidate rules scored side by side, one destatic pass per item.

For each mixture of ``quality.py`` (same groups, halves and scoring) destatic's
hybrid runs once with the inputs of its mixing rule captured: the classic
log-MMSE gains, DeepFilterNet3's gain in destatic's frame, the voice weight
of the voice-band energies, DFN3's local SNR (``lsnr``) per frame, the input's
magnitudes and the measured noise power. Every candidate rule of
:data:`RULES` makes its gains from them; destatic's own inverse step applies
them, and the output is scored as ``quality.py`` scores it. ``default`` is
destatic's own rule (its output is checked against ``destatic.denoise``'s);
``before`` the rule before issue 30 (voice frames' noisy bins only),
``mts_tp3`` the rule before the classic gain kept what persists over a
measured noise away from voices, ``tp3_c25_nvm`` that raise as first tried
(reverted: it kept noise that grows louder and hum it cannot cancel),
``ds_q10`` the rule before the raise reached inside voices (where bins look
like a bed's partials), ``bi10_o6`` the rule before the eighth attempt and
``rn3_m`` (:func:`removed_noise`) the rule before the ninth attempt,
``rn3_m_mf80`` (:func:`deeper_in_mix`) the ninth attempt's and
``mf80_drift`` (its noise raised by its drift) today's default (``mf80_flat*``, ``_fr*``, ``_rd*`` and ``_bm*``:
the tenth attempt's noise that the profile does not describe, an experiment), all
recomputed from the captured inputs (DFN3's gain floored as the classic
gain, and as the hybrid floors it, which is deeper with a measured
profile). ``scene_blend``
(issue 30's seventh attempt, an experiment) picks per file between the
blend ``learned^0.7 classic^0.3`` in every frame and the default, by
:func:`scene_statistics`; every rule's row carries those statistics for
``scene_detector.py``.

Rows are cached per mixture, rule name and destatic's source, so a new rule
re-scores only itself: give an edited rule a new name. Tune with
``--half tune`` (``--quick`` for a first look); report ``--half held`` only
for the rules chosen on the tuning half.

    python benchmarks/hybrid_rules.py --half tune --groups abd --quick --rules mts_e07 mts_e07_s9
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import common
import quality
import result_cache

PEERS = ("noisy", "dfn3", "seed")


@dataclass
class Inputs:
    """What a mixing rule sees for one item, every frame at once (rows: DFN3's rows, 1 for mono)."""

    classic: np.ndarray  # (rows, frames, bins) classic log-MMSE gains
    learned: np.ndarray  # (rows, frames, bins) DFN3's gain in destatic's frame, floored as the classic gain
    voice: np.ndarray  # (rows, frames) the voice weight (voice-band energy DFN3 keeps over 0.4 s)
    lsnr: np.ndarray  # (rows, frames) DFN3's local SNR, dB, at each frame's centre
    magnitude: np.ndarray  # (rows, frames, bins) |Y| of what DFN3 was fed
    noise_power: np.ndarray  # (rows, bins) the profile's noise power
    frames_per_second: float
    bin_hz: float
    half_window: int  # frames either side in the voice window
    auto: bool  # the profile is an auto estimate (no noise stretch measured)
    destatic: np.ndarray  # the gains destatic's own rule made
    profile_tones: np.ndarray  # (bins,) True within 2 bins of one of the profile's tones (hum, a fan's blade)
    learned_deep: np.ndarray  # DFN3's gain floored as the hybrid floors it (deeper with a measured profile)
    classic_floor: float  # the classic gain's floor, the lowest ``learned`` goes


def _today(x: Inputs, voice: np.ndarray, mix: float = 0.7) -> np.ndarray:
    log_classic = np.log(x.classic)
    noisy_bins = np.clip((1 - x.classic) / 0.5, 0, 1)
    weight = (mix * voice)[..., np.newaxis] * noisy_bins
    return np.exp(log_classic + weight * (np.log(x.learned) - log_classic))


def window_mean(values: np.ndarray, half: int) -> np.ndarray:
    """Mean over a centred window of ``2 half + 1`` frames (edge frames padded with the edge values)."""
    padded = np.pad(values, ((0, 0), (half, half)), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1).mean(axis=-1)


def window_max(values: np.ndarray, half: int) -> np.ndarray:
    padded = np.pad(values, ((0, 0), (half, half)), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1).max(axis=-1)


def lsnr_voice(x: Inputs, low: float = -5.0, high: float = 5.0, seconds: float = 0.4, how: str = "mean") -> np.ndarray:
    half = int(round(seconds * x.frames_per_second / 2))
    smooth = window_mean(x.lsnr, half) if how == "mean" else window_max(x.lsnr, half)
    return np.clip((smooth - low) / (high - low), 0, 1)


def steady_share(x: Inputs, over_db: float = 6.0, span_db: float = 6.0, smooth_frames: int = 3) -> np.ndarray:
    """Per bin, 1 where the input's (time-smoothed) power is within ``over_db`` of the noise profile, 0 well above it."""
    power = x.magnitude.astype(np.float64) ** 2
    if smooth_frames > 1:
        kernel = np.ones(smooth_frames) / smooth_frames
        power = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, power)
    ratio_db = 10 * np.log10(power / np.maximum(x.noise_power[:, np.newaxis, :], 1e-30) + 1e-12)
    return np.clip(1 - (ratio_db - over_db) / span_db, 0, 1)


def mix_towards(x: Inputs, weight: np.ndarray) -> np.ndarray:
    log_classic = np.log(x.classic)
    return np.exp(log_classic + weight * (np.log(x.learned) - log_classic))


def region(x: Inputs, seconds: float = 1.0, low: float = -5.0, high: float = 5.0) -> np.ndarray:
    """Voice region: DFN3's local SNR, its maximum over a centred window (pauses inside speech count as voice)."""
    half = int(round(seconds * x.frames_per_second / 2))
    return np.clip((window_max(window_mean(x.lsnr, 2), half) - low) / (high - low), 0, 1)


def kept_or_learned(x: Inputs, voice: np.ndarray, steady: np.ndarray, other: np.ndarray) -> np.ndarray:
    """In voice frames: steady-noise bins to DFN3's gain, the other bins to ``other``; elsewhere the classic gain."""
    log_classic = np.log(x.classic)
    inside = steady * np.log(x.learned) + (1 - steady) * np.log(other)
    v = voice[..., np.newaxis]
    return np.exp(log_classic + v * (inside - log_classic))


def energy_region(x: Inputs, seconds: float = 0.5) -> np.ndarray:
    """Today's voice weight, its maximum over a centred window of ``2 seconds`` (pauses and onsets inside speech)."""
    return window_max(x.voice, int(round(seconds * x.frames_per_second)))


def band_bins(x: Inputs, hz: float) -> int:
    """An odd number of bins, at least 3, spanning about ``hz``: the width of a median across a band."""
    return max(3, int(round(hz / x.bin_hz)) | 1)


def tonal_removed(x: Inputs, over_db: float = 3.0, span_db: float = 6.0, frames: int = 5, width_hz: float = 250.0) -> np.ndarray:
    """Per bin, 1 where what DFN3 removes stands out as a tone: above its neighbours in frequency and above the profile.

    The removed power ``|Y|^2 (1 - L)^2`` is averaged over ``frames`` frames (noise's chance peaks average out, held
    notes do not), then compared with the larger of its median over ``width_hz`` around the bin (a broadband burst,
    such as a copy machine's clatter, raises its neighbours too) and the profile's noise power (the steady tones of
    a fan or hum are in the profile). 0 at ``over_db`` above them, 1 from ``over_db + span_db``.
    """
    from scipy.ndimage import median_filter, uniform_filter1d

    removed = x.magnitude.astype(np.float64) ** 2 * (1 - x.learned.astype(np.float64)) ** 2
    removed = np.maximum(uniform_filter1d(removed, frames, axis=1, mode="nearest"), 0)
    width = band_bins(x, width_hz)
    neighbours = median_filter(removed, size=(1, 1, width), mode="nearest")
    ground = np.maximum(neighbours, x.noise_power[:, np.newaxis, :])
    excess_db = 10 * np.log10((removed + 1e-30) / (ground + 1e-30))
    return np.clip((excess_db - over_db) / span_db, 0, 1)


def mts_weight(x: Inputs) -> np.ndarray:
    """``mts_e07``'s weight: ``0.7 max(v noisy, region steady)``."""
    return 0.7 * np.maximum(
        x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1), energy_region(x)[..., np.newaxis] * steady_share(x)
    )


def learned_unless_tonal(x: Inputs, voice: np.ndarray, protect: np.ndarray, mix: float = 1.0) -> np.ndarray:
    """In voice frames every bin but the protected ones moves towards DFN3's gain (``mix`` of the way, in dB)."""
    return mix_towards(x, mix * voice[..., np.newaxis] * (1 - protect))


def continuity_gain(x: Inputs, frames: int = 7, over_db: float = 3.0, span_db: float = 6.0, peaky_db: float | None = None) -> np.ndarray:
    """A gain from the input's power averaged over ``frames`` frames, where it persists over the noise.

    A held note keeps its bin's power over the profile frame after frame; the
    noise's chance peaks average out (``frames`` frames of steady noise rarely
    stand 3 dB over its mean). The gain is the Wiener gain of that averaged
    power, ``1 - P_noise / P_avg``, weighted by how far ``P_avg`` stands over
    the profile (0 at ``over_db``, 1 from ``over_db + span_db``); with
    ``peaky_db``, also by how far it stands over its median across 250 Hz
    (a tone, not a broadband rise).
    """
    from scipy.ndimage import median_filter, uniform_filter1d

    power = uniform_filter1d(x.magnitude.astype(np.float64) ** 2, frames, axis=1, mode="nearest")
    noise = np.maximum(x.noise_power[:, np.newaxis, :], 1e-30)
    over = 10 * np.log10(power / noise + 1e-12)
    weight = np.clip((over - over_db) / span_db, 0, 1)
    if peaky_db is not None:
        width = band_bins(x, 250.0)
        band = median_filter(power, size=(1, 1, width), mode="nearest")
        weight = weight * np.clip((10 * np.log10((power + 1e-30) / (band + 1e-30)) - peaky_db) / span_db, 0, 1)
    return weight * np.clip(1 - noise / np.maximum(power, 1e-30), 0, 1)


def with_continuity(x: Inputs, rule: str, where: str = "all", after: str = "none", **options: float) -> np.ndarray:
    """``rule`` on the classic gain raised, bin by bin, to :func:`continuity_gain` where that is higher.

    ``where``: ``all`` frames, ``outside`` the voice region only (1 - :func:`energy_region`), or ``none``.
    ``after``: ``tone`` also raises the mixed gain to it in the bins :func:`tonal_removed` flags (a note
    DFN3 removes under a voice); ``none`` does not.
    """
    continuity = continuity_gain(x, **options).astype(x.classic.dtype)
    allowed = {"all": continuity, "none": 0 * continuity, "outside": continuity * (1 - energy_region(x))[..., np.newaxis]}[where]
    gains = RULES[rule](replace(x, classic=np.maximum(x.classic, allowed)))
    if after == "tone":
        gains = np.maximum(gains, continuity * tonal_removed(x, over_db=3.0))
    return gains


SMOOTH_FRAMES = 3
"""Frames a bin's power is averaged over before its peakiness and flux are read (``bed_features.py``)."""
STABLE_SECONDS = 0.1
"""Either side of a frame: the span over which a bed's partial holds and clatter comes and goes."""
NEIGHBOURS = (2, 3, 4)
"""A bin's peakiness is read against the mean of the bins this far away on both sides."""


def peakiness_db(power: np.ndarray) -> np.ndarray:
    """Per frame and bin (``power`` is ``(..., frames, bins)``), dB over the mean of the bins :data:`NEIGHBOURS` away."""
    reach = max(NEIGHBOURS)
    pad = [(0, 0)] * (power.ndim - 1) + [(reach, reach)]
    padded = np.pad(power, pad, mode="edge")
    bins = power.shape[-1]
    around = sum(padded[..., reach + k : reach + k + bins] + padded[..., reach - k : reach - k + bins] for k in NEIGHBOURS)
    return 10 * np.log10((power + 1e-30) / (around / (2 * len(NEIGHBOURS)) + 1e-30))


def stable_peak_db(peak: np.ndarray, half_frames: int) -> np.ndarray:
    """The smallest, over ``+- half_frames`` (axis -2), of the largest peakiness within one bin: a peak that holds its place."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    near = maximum_filter1d(peak, 3, axis=-1, mode="nearest")
    return minimum_filter1d(near, 2 * half_frames + 1, axis=-2, mode="nearest")


def flux_db(power: np.ndarray, half_frames: int) -> np.ndarray:
    """Minus the spread, in dB, of each bin's power over ``+- half_frames`` (axis -2): near 0 for what holds, low for clatter."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    level = 10 * np.log10(power + 1e-30)
    size = 2 * half_frames + 1
    return minimum_filter1d(level, size, axis=-2, mode="nearest") - maximum_filter1d(level, size, axis=-2, mode="nearest")


def bed_like(x: Inputs, peak_db: float = 3.0, flux_db_at: float = -15.0, peak_span: float = 3.0, flux_span: float = 5.0,
             use_flux: bool = True) -> np.ndarray:
    """Per bin, 1 where the input looks like a bed's partial: peaky (within a bin, over its neighbours 2-4 bins away)
    and steady over +-:data:`STABLE_SECONDS` (clatter is neither); ramps of ``peak_span`` and ``flux_span`` dB."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    power = uniform_filter1d(x.magnitude.astype(np.float64) ** 2, SMOOTH_FRAMES, axis=1, mode="nearest")
    peak = maximum_filter1d(peakiness_db(power), 3, axis=-1, mode="nearest")
    weight = np.clip((peak - peak_db) / peak_span + 1, 0, 1)
    if use_flux:
        half = max(1, int(round(STABLE_SECONDS * x.frames_per_second)))
        weight = weight * np.clip((flux_db(power, half) - flux_db_at) / flux_span + 1, 0, 1)
    return weight


def bed_in_voices(x: Inputs, inside: float = 1.0, clatter: float = 0.0, keep: bool = False, inside_over_db: float = 3.0,
                  keep_removed_over_db: float | None = None, **options: float) -> np.ndarray:
    """``ds_q10`` with its persistence raise also inside the voice region (``inside`` of the way, from ``inside_over_db``
    over the drifted noise) where :func:`bed_like` (the bed's partials, not clatter); ``clatter``: in voice frames the
    bins the classic rule keeps (``Gc >= 0.5``) that are not bed-like at least that far towards DFN3's gain; ``keep``:
    bed-like bins not moved towards DFN3."""
    if x.auto:
        return x.destatic
    region = energy_region(x)
    bed = bed_like(x, **options)
    persistent = drift_persistence(x) * ~x.profile_tones
    within = persistent if inside_over_db == 3.0 else drift_persistence(x, over_db=inside_over_db) * ~x.profile_tones
    allowed = persistent * (1 - region)[..., np.newaxis] + within * inside * region[..., np.newaxis] * bed
    raised = replace(x, classic=np.maximum(x.classic, allowed.astype(x.classic.dtype)))
    weight = mts_weight(raised) * (1 - tonal_removed(x, over_db=3.0))
    if keep:
        weight = weight * (1 - bed)
    if keep_removed_over_db is not None:
        from scipy.ndimage import uniform_filter1d

        removed = uniform_filter1d(x.magnitude.astype(np.float64) ** 2 * (1 - x.learned.astype(np.float64) ** 2), 3,
                                   axis=1, mode="nearest")
        removed_db = 10 * np.log10(np.maximum(removed, 1e-30) / np.maximum(x.noise_power[:, np.newaxis, :], 1e-30))
        weight = weight * (1 - bed * np.clip((removed_db - keep_removed_over_db) / 3.0, 0, 1))
    if clatter:
        kept = np.clip((raised.classic - 0.4) / 0.2, 0, 1)
        weight = np.maximum(weight, clatter * x.voice[..., np.newaxis] * kept * (1 - bed) * (1 - tonal_removed(x, over_db=3.0)))
    return mix_towards(raised, weight)


def removed_noise(x: Inputs, over_db: float = 3.0, span_db: float = 3.0, frames: int = 3, up: bool = False,
                  mix: float = 1.0, measured_only: bool = False, up_in_voice: bool = False,
                  up_kept_over_db: float | None = None, lower_floor_db: float | None = None, drifted: bool = False,
                  flat_db: float | None = None, flat_hz: float = 250.0, flat_cap_db: float | None = None,
                  flat_rise_db: float | None = None, band_min_seconds: float | None = None,
                  removed_quantile: float | None = None, removed_frames: int = 3, **bed_options) -> np.ndarray:
    """``bi10_o6``'s gains, moved in the voice region towards DFN3's gain in the bins where what DFN3 removes,
    ``|Y|^2 (1 - L^2)`` averaged over ``frames`` frames, is no more than the profile's noise (1 up to ``over_db`` over
    it, 0 from ``over_db + span_db``): there DFN3 takes out only steady noise, between and under the voice's
    harmonics. A bed's note that DFN3 deletes stands over the noise and keeps the default's gain. Only downwards
    unless ``up`` (``up_in_voice``: upwards only in frames the voice weight calls voice, not their whole region;
    ``up_kept_over_db``: only where the power DFN3 keeps is that far over the noise, ramp 3 dB); never at the profile's
    tones; ``measured_only``: not with an automatic profile (issue 30's eighth attempt); ``lower_floor_db``: the
    lowering step goes down to DFN3's gain floored there (ninth attempt), the rest as before; ``drifted``: the profile
    raised by the noise's drift (:func:`drift_persistence`'s), so that noise grown louder counts as noise;

    Issue 30's tenth attempt (experiments), for noise the profile does not describe: ``flat_db``, what DFN3 removes
    also counts as noise where it stands no more than that over its median across ``flat_hz`` (ramp 3 dB): a copy
    machine's clatter is spread over its band, a held partial is not; ``flat_cap_db``, read on the ratio of what DFN3
    removes to the noise (the noise's shape scaled up is flat), and only where that ratio's median across the band is
    no more than ``flat_cap_db`` (ramp 3 dB: a voice or a bed over a faint noise is not noise grown louder) and, with
    ``flat_rise_db``, at least that (ramp 3 dB: the noise has grown over its profile in that band);
    ``band_min_seconds``, the noise raised, per bin, to the least over +- that many seconds of the input's power over
    it, its median across ``flat_hz`` first (grown noise fills its band's pauses and most of its bins);
    ``removed_quantile``, the noise raised, frame by frame, to that quantile over bins of what DFN3 removes over it
    (averaged over ``removed_frames``): a voice or a bed's notes fill too few bins to raise it.
    ``bed_options`` go to :func:`bed_in_voices`."""
    from scipy.ndimage import uniform_filter1d

    if measured_only and x.auto:
        return x.destatic

    base = bed_in_voices(x, inside_over_db=6.0, **bed_options)  # the rule before (destatic's own gains include it)
    learned = x.learned.astype(np.float64)
    target = learned if lower_floor_db is None else np.maximum(x.learned_deep, 10 ** (-lower_floor_db / 20))
    removed = uniform_filter1d(x.magnitude.astype(np.float64) ** 2 * (1 - learned**2), frames, axis=1, mode="nearest")
    noise = np.maximum(x.noise_power[:, np.newaxis, :], 1e-30)
    if drifted:  # the profile raised as far as the whole spectrum stands over it (drift_persistence's)
        power = uniform_filter1d(x.magnitude.astype(np.float64) ** 2, 25, axis=1, mode="nearest")
        noise = noise * np.maximum(np.quantile(power / noise, 0.1, axis=-1), 1.0)[..., np.newaxis]
    if band_min_seconds is not None:
        from scipy.ndimage import median_filter, minimum_filter1d

        width = band_bins(x, flat_hz)
        level = uniform_filter1d(x.magnitude.astype(np.float64) ** 2, frames, axis=1, mode="nearest") / noise
        level = median_filter(level, size=(1, 1, width), mode="nearest")
        reach = max(1, int(round(band_min_seconds * x.frames_per_second)))
        noise = noise * np.maximum(minimum_filter1d(level, 2 * reach + 1, axis=1, mode="nearest"), 1.0)
    if removed_quantile is not None:
        averaged = removed if removed_frames == frames else uniform_filter1d(
            x.magnitude.astype(np.float64) ** 2 * (1 - learned**2), removed_frames, axis=1, mode="nearest")
        grown = np.quantile(averaged / noise, removed_quantile, axis=-1)
        noise = noise * np.maximum(grown, 1.0)[..., np.newaxis]
    excess_db = 10 * np.log10(np.maximum(removed, 1e-30) / noise)
    noise_only = np.clip((over_db + span_db - excess_db) / span_db, 0, 1) * ~x.profile_tones
    if flat_db is not None:
        from scipy.ndimage import median_filter

        width = band_bins(x, flat_hz)
        if flat_cap_db is None:
            band = np.maximum(median_filter(removed, size=(1, 1, width), mode="nearest"), noise)
            peaky_db = 10 * np.log10(np.maximum(removed, 1e-30) / band)
            flat = np.clip((flat_db + 3.0 - peaky_db) / 3.0, 0, 1)
        else:
            ratio = np.maximum(removed, 1e-30) / noise
            band = np.maximum(median_filter(ratio, size=(1, 1, width), mode="nearest"), 1.0)
            peaky_db = 10 * np.log10(ratio / band)
            band_db = 10 * np.log10(band)
            flat = np.clip((flat_db + 3.0 - peaky_db) / 3.0, 0, 1) * np.clip((flat_cap_db + 3.0 - band_db) / 3.0, 0, 1)
            if flat_rise_db is not None:
                flat = flat * np.clip((band_db - flat_rise_db) / 3.0, 0, 1)
        noise_only = np.maximum(noise_only, flat * ~x.profile_tones)
    weight = mix * energy_region(x)[..., np.newaxis] * noise_only
    log_default = np.log(base.astype(np.float64))
    lower = np.exp(log_default + weight * (np.log(np.minimum(target, base)) - log_default))
    if not (up or up_in_voice):
        return lower.astype(base.dtype)
    if up_in_voice:
        weight = mix * x.voice[..., np.newaxis] * noise_only
    if up_kept_over_db is not None:
        kept = uniform_filter1d(x.magnitude.astype(np.float64) ** 2 * learned**2, frames, axis=1, mode="nearest")
        kept_db = 10 * np.log10(np.maximum(kept, 1e-30) / np.maximum(x.noise_power[:, np.newaxis, :], 1e-30))
        weight = weight * np.clip((kept_db - up_kept_over_db) / 3.0, 0, 1)
    higher = np.exp(log_default + weight * (np.log(np.maximum(learned, base)) - log_default))
    return np.where(learned < base, lower, higher).astype(base.dtype)


def floored(x: Inputs, floor_db: float, pauses_db: float | None = None, steady_db: float | None = None,
            classic_under_db: float | None = None, deep_db: float = 80.0) -> np.ndarray:
    """``rn3_m`` with DFN3's gain floored at ``floor_db`` instead of the classic gain's floor, in the mix and the lowering
    step alike (issue 30's ninth attempt; ``x.learned_deep`` holds it down to 80 dB). ``pauses_db``: the floor goes
    down to that as the frame's voice weight goes to 0; ``steady_db``: ... in bins within 6 dB of the profile (ramp to
    12 dB); ``classic_under_db``: down to ``deep_db`` where the classic gain is under that (ramp 6 dB)."""
    floor_db_here: np.ndarray | float = floor_db
    if pauses_db is not None:
        floor_db_here = (floor_db + (pauses_db - floor_db) * (1 - x.voice))[..., np.newaxis]
    if steady_db is not None:
        from scipy.ndimage import uniform_filter1d

        power = uniform_filter1d(x.magnitude.astype(np.float64) ** 2, 3, axis=1, mode="nearest")
        over = 10 * np.log10(power / np.maximum(x.noise_power[:, np.newaxis, :], 1e-30) + 1e-12)
        floor_db_here = floor_db + (steady_db - floor_db) * np.clip(1 - (over - 6.0) / 6.0, 0, 1)
    if classic_under_db is not None:
        classic_db = 20 * np.log10(np.maximum(x.classic.astype(np.float64), 1e-12))
        floor_db_here = floor_db + (deep_db - floor_db) * np.clip((classic_under_db + 6.0 - classic_db) / 6.0, 0, 1)
    learned = np.maximum(x.learned_deep, 10 ** (-np.asarray(floor_db_here) / 20)).astype(x.learned.dtype)
    return removed_noise(replace(x, learned=learned), measured_only=True)


def deeper_in_mix(x: Inputs, floor_db: float, **options) -> np.ndarray:
    """``rn3_m`` with DFN3's gain floored at ``floor_db`` (not the classic gain's floor) where it is mixed in, but
    still at the classic gain's floor where the lowering step takes a bin down to it; with a measured profile only
    (issue 30's ninth attempt, today's default at 80 dB)."""
    if x.auto:
        return x.destatic
    return removed_noise(replace(x, learned=np.maximum(x.learned_deep, 10 ** (-floor_db / 20)).astype(x.learned.dtype)),
                         measured_only=True, lower_floor_db=-20 * np.log10(x.classic_floor), **options)


SCENE_VOICE_BELOW = 0.2
"""Frames whose voice weight's region (:func:`energy_region`) is under this count as "not voice" for the scene detector."""


def scene_statistics(x: Inputs) -> dict[str, float]:
    """Per file, how much besides voice and the steady noise the not-voice frames hold (issue 30's seventh attempt).

    ``scene_kept``: in not-voice frames, the mean share of bins (tones of the profile left out) whose power, over
    25 frames, persists over the drifted noise profile (:func:`drift_persistence` over 0.5); ``scene_kept_p90``: the
    90th percentile of that share over the frames whose own voice weight is low (pauses inside speech too);
    ``scene_partials``: in the voice region, the share of bins that look like a bed's partial (:func:`bed_like`) and
    persist 6 dB over the drifted noise; ``scene_classic_db``:
    the energy the classic gain keeps there against the input's, dB; ``scene_lsnr``: DFN3's mean local SNR there.
    Falls back to every frame when fewer than 1 % are not voice.
    """
    quiet = energy_region(x) < SCENE_VOICE_BELOW
    if quiet.mean() < 0.01:
        quiet = np.ones_like(quiet)
    kept = (drift_persistence(x) > 0.5) & ~x.profile_tones
    power = x.magnitude.astype(np.float64) ** 2
    kept_energy = (power * x.classic.astype(np.float64) ** 2)[quiet].sum()
    pauses = x.voice < SCENE_VOICE_BELOW
    region = energy_region(x) >= SCENE_VOICE_BELOW
    partials = (bed_like(x) * drift_persistence(x, over_db=6.0) > 0.5) & ~x.profile_tones
    return {
        "scene_kept": float(kept.mean(axis=-1)[quiet].mean()),
        "scene_kept_p90": float(np.percentile(kept.mean(axis=-1)[pauses], 90)) if pauses.any() else 0.0,
        "scene_partials": float(partials.mean(axis=-1)[region].mean()) if region.any() else 0.0,
        "scene_classic_db": float(10 * np.log10((kept_energy + 1e-30) / (power[quiet].sum() + 1e-30))),
        "scene_lsnr": float(x.lsnr[quiet].mean()),
        "scene_quiet_share": float(quiet.mean()),
    }


def scene_blend(x: Inputs, statistic: str = "scene_classic_db", below: float = -3.375, mix: float = 0.7,
                tones: bool = True, auto: bool = False, pauses_below: float = np.inf) -> np.ndarray:
    """``learned^mix * classic^(1 - mix)`` in every frame where the file's ``statistic`` (:func:`scene_statistics`) is
    under ``below`` ("only voice and steady noise"), else destatic's default rule; ``tones``: the profile's tones
    keep the default's gain (its hum handling); ``auto``: with an automatic profile too, else the default there;
    ``pauses_below``: also only where ``scene_kept_p90`` (what persists in pauses inside speech) is under it."""
    scene = scene_statistics(x)
    if (x.auto and not auto) or scene[statistic] >= below or scene["scene_kept_p90"] >= pauses_below:
        return x.destatic
    blend = mix_towards(x, np.full_like(x.classic, mix))
    return np.where(x.profile_tones, x.destatic, blend) if tones else blend


RULES: dict[str, Callable[[Inputs], np.ndarray]] = {
    "default": lambda x: x.destatic,
    "blend07_all": lambda x: mix_towards(x, np.full_like(x.classic, 0.7)),
    "learned_all": lambda x: x.learned,
    "blend07_tones": lambda x: np.where(x.profile_tones, x.destatic, mix_towards(x, np.full_like(x.classic, 0.7))),
    "scene_blend": lambda x: scene_blend(x),
    "scene_blend_p": lambda x: scene_blend(x, pauses_below=0.01363),
    "before": lambda x: _today(x, x.voice),
    "today_lsnr": lambda x: _today(x, lsnr_voice(x)),
    "today_lsnr_m1": lambda x: _today(x, lsnr_voice(x), mix=1.0),
    "learned_in_voice": lambda x: mix_towards(x, lsnr_voice(x)[..., np.newaxis] * np.ones_like(x.classic)),
    "learned_region": lambda x: mix_towards(x, region(x)[..., np.newaxis] * np.ones_like(x.classic)),
    "geo07_region": lambda x: mix_towards(x, 0.7 * region(x)[..., np.newaxis] * np.ones_like(x.classic)),
    "min_region": lambda x: kept_or_learned(x, region(x), np.zeros_like(x.classic), np.minimum(x.classic, x.learned)),
    "steady_max_region": lambda x: kept_or_learned(x, region(x), steady_share(x), np.maximum(x.classic, x.learned)),
    "steady_classic_region": lambda x: kept_or_learned(x, region(x), steady_share(x), x.classic),
    "steady_geo_region": lambda x: kept_or_learned(x, region(x), steady_share(x), np.sqrt(x.classic * x.learned)),
    "sc_o9": lambda x: kept_or_learned(x, region(x), steady_share(x, over_db=9.0), x.classic),
    "sm_o9": lambda x: kept_or_learned(x, region(x), steady_share(x, over_db=9.0), np.maximum(x.classic, x.learned)),
    "sg25_region": lambda x: kept_or_learned(x, region(x), steady_share(x), x.classic**0.75 * x.learned**0.25),
    "sc_auto_geo": lambda x: kept_or_learned(
        x, region(x), steady_share(x), np.sqrt(x.classic * x.learned) if x.auto else x.classic
    ),
    "sc_region06": lambda x: kept_or_learned(x, region(x, seconds=0.6), steady_share(x), x.classic),
    "sc_s7": lambda x: kept_or_learned(x, region(x), steady_share(x, smooth_frames=7), x.classic),
    "sc_s13": lambda x: kept_or_learned(x, region(x), steady_share(x, smooth_frames=13), x.classic),
    "sm_s13": lambda x: kept_or_learned(x, region(x), steady_share(x, smooth_frames=13), np.maximum(x.classic, x.learned)),
    "sg_s13_strict": lambda x: kept_or_learned(
        x, region(x, low=0.0, high=8.0), steady_share(x, smooth_frames=13), np.sqrt(x.classic * x.learned)
    ),
    "sc_s13_strict": lambda x: kept_or_learned(x, region(x, low=0.0, high=8.0), steady_share(x, smooth_frames=13), x.classic),
    "sg25_s13": lambda x: kept_or_learned(x, region(x), steady_share(x, smooth_frames=13), x.classic**0.75 * x.learned**0.25),
    "today_region": lambda x: _today(x, window_max(x.voice, int(round(0.5 * x.frames_per_second)))),
    "sc_energy_region": lambda x: kept_or_learned(
        x, window_max(x.voice, int(round(0.5 * x.frames_per_second))), steady_share(x), x.classic
    ),
    "max_today_sc": lambda x: mix_towards(x, np.maximum(
        0.7 * x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1), region(x)[..., np.newaxis] * steady_share(x)
    )),
    "max_today_sc_e": lambda x: mix_towards(x, np.maximum(
        0.7 * x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1),
        window_max(x.voice, int(round(0.5 * x.frames_per_second)))[..., np.newaxis] * steady_share(x),
    )),
    "sc_energy_region07": lambda x: mix_towards(
        x, 0.7 * window_max(x.voice, int(round(0.5 * x.frames_per_second)))[..., np.newaxis] * steady_share(x)
    ),
    "max07": lambda x: mix_towards(x, 0.7 * window_max(x.voice, int(round(0.5 * x.frames_per_second)))[..., np.newaxis]
                                   * np.maximum(np.clip((1 - x.classic) / 0.5, 0, 1), steady_share(x))),
    "mts_e07": lambda x: mix_towards(x, 0.7 * np.maximum(
        x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1),
        window_max(x.voice, int(round(0.5 * x.frames_per_second)))[..., np.newaxis] * steady_share(x),
    )),
    "mts_e07_s12": lambda x: mix_towards(x, 0.7 * np.maximum(
        x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1) * steady_share(x, over_db=12.0),
        window_max(x.voice, int(round(0.5 * x.frames_per_second)))[..., np.newaxis] * steady_share(x),
    )),
    "mts_e07_s9": lambda x: mix_towards(x, 0.7 * np.maximum(
        x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1) * steady_share(x, over_db=9.0),
        window_max(x.voice, int(round(0.5 * x.frames_per_second)))[..., np.newaxis] * steady_share(x),
    )),
    "steady_to_learned": lambda x: mix_towards(
        x, lsnr_voice(x)[..., np.newaxis] * np.maximum(steady_share(x), np.clip((1 - x.classic) / 0.5, 0, 1))
    ),
    "tone_e10": lambda x: learned_unless_tonal(x, energy_region(x), tonal_removed(x)),
    "tone_e07": lambda x: learned_unless_tonal(x, energy_region(x), tonal_removed(x), mix=0.7),
    "tone_e10_w": lambda x: learned_unless_tonal(x, energy_region(x), tonal_removed(x, over_db=0.0)),
    "tone_e10_m3": lambda x: learned_unless_tonal(x, energy_region(x), tonal_removed(x, over_db=-3.0)),
    "tone_e10_w_wide": lambda x: learned_unless_tonal(x, energy_region(x), tonal_removed(x, over_db=0.0, width_hz=500.0)),
    "mts_tp0": lambda x: mix_towards(x, mts_weight(x) * (1 - tonal_removed(x, over_db=0.0))),
    "mts_tp3": lambda x: mix_towards(x, mts_weight(x) * (1 - tonal_removed(x, over_db=3.0))),
    "mts_tp3_l": lambda x: mix_towards(x, mts_weight(x) * (1 - tonal_removed(x, over_db=3.0)
                                                          * np.clip((0.6 - x.learned) / 0.3, 0, 1))),
    "mts_tpm3": lambda x: mix_towards(x, mts_weight(x) * (1 - tonal_removed(x, over_db=-3.0))),
    "today_tp0": lambda x: mix_towards(x, 0.7 * x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1)
                                       * (1 - tonal_removed(x, over_db=0.0))),
    "classic": lambda x: x.classic,
    "classic_c7": lambda x: with_continuity(x, "classic"),
    "tp3_c7": lambda x: with_continuity(x, "mts_tp3"),
    "tp3_c7_o6": lambda x: with_continuity(x, "mts_tp3", over_db=6.0),
    "tp3_c13": lambda x: with_continuity(x, "mts_tp3", frames=13),
    "tp3_c13_o6": lambda x: with_continuity(x, "mts_tp3", frames=13, over_db=6.0),
    "tp3_c7_p3": lambda x: with_continuity(x, "mts_tp3", peaky_db=3.0),
    "tp3_c13_p0": lambda x: with_continuity(x, "mts_tp3", frames=13, peaky_db=0.0),
    "tp3_c7_nv": lambda x: with_continuity(x, "mts_tp3", where="outside"),
    "tp3_c7_t": lambda x: with_continuity(x, "mts_tp3", where="none", after="tone"),
    "tp3_c7_nvt": lambda x: with_continuity(x, "mts_tp3", where="outside", after="tone"),
    "tp3_c13o6_nvt": lambda x: with_continuity(x, "mts_tp3", where="outside", after="tone", frames=13, over_db=6.0),
    "tp3_c7_nvt0": lambda x: with_continuity(x, "mts_tp3", where="outside", after="tone", over_db=0.0),
    "tp3_c7o6_nv": lambda x: with_continuity(x, "mts_tp3", where="outside", over_db=6.0),
    "tp3_c13_nv": lambda x: with_continuity(x, "mts_tp3", where="outside", frames=13),
    "tp3_c25_nv": lambda x: with_continuity(x, "mts_tp3", where="outside", frames=25),
    "tp3_c25o1_nv": lambda x: with_continuity(x, "mts_tp3", where="outside", frames=25, over_db=1.0),
    "tp3_c13p0_nv": lambda x: with_continuity(x, "mts_tp3", where="outside", frames=13, peaky_db=0.0),
    "tp3_c25_nvm": lambda x: x.destatic if x.auto else with_continuity(x, "mts_tp3", where="outside", frames=25),
    "tp3_c13_nvm": lambda x: x.destatic if x.auto else with_continuity(x, "mts_tp3", where="outside", frames=13),
    "tp3_c25o1_nvm": lambda x: x.destatic if x.auto else with_continuity(x, "mts_tp3", where="outside", frames=25, over_db=1.0),
    "c25nvm_p3": lambda x: x.destatic if x.auto else with_continuity(replace(x, classic=np.maximum(
        x.classic, (continuity_gain(x, frames=25) * (1 - energy_region(x))[..., np.newaxis]).astype(x.classic.dtype))),
        "mts_tp3", peaky_db=3.0),
    "c25nvm_p6o6": lambda x: x.destatic if x.auto else with_continuity(replace(x, classic=np.maximum(
        x.classic, (continuity_gain(x, frames=25) * (1 - energy_region(x))[..., np.newaxis]).astype(x.classic.dtype))),
        "mts_tp3", peaky_db=6.0, over_db=6.0),
    "tp3w_c7": lambda x: mix_towards(replace(x, classic=np.maximum(x.classic, continuity_gain(x).astype(x.classic.dtype))),
                                      mts_weight(x) * (1 - tonal_removed(x, over_db=3.0))),
    "tp3w_c25": lambda x: mix_towards(replace(x, classic=np.maximum(x.classic, continuity_gain(x, frames=25).astype(x.classic.dtype))),
                                       mts_weight(x) * (1 - tonal_removed(x, over_db=3.0))),
    "tp3w_c25o6": lambda x: mix_towards(replace(x, classic=np.maximum(
        x.classic, continuity_gain(x, frames=25, over_db=6.0).astype(x.classic.dtype))), mts_weight(x) * (1 - tonal_removed(x, over_db=3.0))),
    "sp_c25_p3": lambda x: safe_persistence(x),
    "sp_c25_p0": lambda x: safe_persistence(x, peaky_db=0.0),
    "sp_c25_p6": lambda x: safe_persistence(x, peaky_db=6.0),
    "ds_q10": lambda x: drift_safe(x),
    "ds_q20": lambda x: drift_safe(x, quantile=0.2),
    "ds_q05": lambda x: drift_safe(x, quantile=0.05),
    "ds_q10_p0": lambda x: drift_safe(x, peaky_db=0.0),
    "ds_q10_in03": lambda x: drift_safe(x, inside=0.3),
    "ds_q10_o1": lambda x: drift_safe(x, over_db=1.0),
    "ds_q10_o0s3": lambda x: drift_safe(x, over_db=0.0, span_db=3.0),
    "ds_q10_c13": lambda x: drift_safe(x, frames=13),
    "ds_q10_c49": lambda x: drift_safe(x, frames=49),
    "gap05": lambda x: pauses_to_learned(x, 0.5),
    "vall03": lambda x: voice_frames_to_learned(x, 0.3),
    "vall05": lambda x: voice_frames_to_learned(x, 0.5),
    "vall03_gap05": lambda x: voice_frames_to_learned(x, 0.3, pauses=0.5),
    "gap07": lambda x: pauses_to_learned(x, 0.7),
    "gap10": lambda x: pauses_to_learned(x, 1.0),
    "ds_q10_in05": lambda x: drift_safe(x, inside=0.5),
    "ds_q10_in10": lambda x: drift_safe(x, inside=1.0),
    "ds_q10_in05_c7": lambda x: drift_safe(x, inside=0.5, frames=7),
    "sp_c13_p3": lambda x: safe_persistence(x, frames=13, peaky_db=3.0),
    "sp_c25_p3o1": lambda x: safe_persistence(x, over_db=1.0),
    "sp_c25_p3_any": lambda x: safe_persistence(x, tones=False),
    "sp_c25_p3_auto": lambda x: safe_persistence(x, auto=True),
    "sp_c25_pm3": lambda x: safe_persistence(x, peaky_db=-3.0),
    "sp_c25_none": lambda x: safe_persistence(x, peaky_db=None),
    "bi10": lambda x: bed_in_voices(x),
    "bi10_p6": lambda x: bed_in_voices(x, peak_db=6.0),
    "bi10_nf": lambda x: bed_in_voices(x, use_flux=False),
    "bi10_f10": lambda x: bed_in_voices(x, flux_db_at=-10.0),
    "bi05": lambda x: bed_in_voices(x, inside=0.5),
    "bi10_k": lambda x: bed_in_voices(x, keep=True),
    "bi10_cl03": lambda x: bed_in_voices(x, clatter=0.3),
    "bi10_cl05": lambda x: bed_in_voices(x, clatter=0.5),
    "bi00_cl05": lambda x: bed_in_voices(x, inside=0.0, clatter=0.5),
    "bi10_o6": lambda x: bed_in_voices(x, inside_over_db=6.0),
    "bi10_o9": lambda x: bed_in_voices(x, inside_over_db=9.0),
    "bi10_o6_p6": lambda x: bed_in_voices(x, inside_over_db=6.0, peak_db=6.0),
    "rn3": lambda x: removed_noise(x),
    "rn0": lambda x: removed_noise(x, over_db=0.0),
    "rn6": lambda x: removed_noise(x, over_db=6.0),
    "rn3_up": lambda x: removed_noise(x, up=True),
    "rn3_m05": lambda x: removed_noise(x, mix=0.5),
    "rn3_up_m": lambda x: removed_noise(x, up=True, measured_only=True),
    "rn3_upv_m": lambda x: removed_noise(x, up_in_voice=True, measured_only=True),
    "rn6_up_m": lambda x: removed_noise(x, over_db=6.0, up=True, measured_only=True),
    "rn3_m": lambda x: removed_noise(x, measured_only=True),
    "rn3_upk0_m": lambda x: removed_noise(x, up=True, measured_only=True, up_kept_over_db=0.0),
    "rn3_upkm3_m": lambda x: removed_noise(x, up=True, measured_only=True, up_kept_over_db=-3.0),
    "rn3_m_f40": lambda x: floored(x, 40.0),
    "rn3_m_f80": lambda x: floored(x, 80.0),
    "rn3_m_fv80": lambda x: floored(x, 30.0, pauses_db=80.0),
    "rn3_m_fs50": lambda x: floored(x, 30.0, steady_db=50.0),
    "rn3_m_fc27": lambda x: floored(x, 30.0, classic_under_db=-27.0),
    "rn3_m_lf80": lambda x: removed_noise(x, measured_only=True, lower_floor_db=80.0),
    "rn3_m_mf40": lambda x: deeper_in_mix(x, 40.0),
    "rn3_m_mf60": lambda x: deeper_in_mix(x, 60.0),
    "rn3_m_mf80": lambda x: deeper_in_mix(x, 80.0),
    "mf80_drift": lambda x: deeper_in_mix(x, 80.0, drifted=True),
    "mf80_flat3": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=3.0),
    "mf80_flat6": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0),
    "mf80_flat0": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=0.0),
    "mf80_flat3w5": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=3.0, flat_hz=500.0),
    "mf80_fr3c15": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=3.0, flat_cap_db=15.0),
    "mf80_fr6c15": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0),
    "mf80_fr3c20": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=3.0, flat_cap_db=20.0),
    "mf80_fr6c10": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=10.0),
    "mf80_rd50": lambda x: deeper_in_mix(x, 80.0, drifted=True, removed_quantile=0.5),
    "mf80_rd30": lambda x: deeper_in_mix(x, 80.0, drifted=True, removed_quantile=0.3),
    "mf80_rd70": lambda x: deeper_in_mix(x, 80.0, drifted=True, removed_quantile=0.7),
    "mf80_rd50_25": lambda x: deeper_in_mix(x, 80.0, drifted=True, removed_quantile=0.5, removed_frames=25),
    "mf80_fr6c15r3": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0, flat_rise_db=3.0),
    "mf80_fr6c15r6": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0, flat_rise_db=6.0),
    "mf80_fr3c15r3": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=3.0, flat_cap_db=15.0, flat_rise_db=3.0),
    "mf80_fr6c15r3w5": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0, flat_rise_db=3.0,
                                               flat_hz=500.0),
    "mf80_fr6c20r6w5": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=20.0, flat_rise_db=6.0,
                                               flat_hz=500.0),
    "mf80_fr6c15w10": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0, flat_hz=1000.0),
    "mf80_fr6c15w20": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0, flat_hz=2000.0),
    "mf80_fr6c15r3w10": lambda x: deeper_in_mix(x, 80.0, drifted=True, flat_db=6.0, flat_cap_db=15.0, flat_rise_db=3.0,
                                                flat_hz=1000.0),
    "mf80_bm05": lambda x: deeper_in_mix(x, 80.0, drifted=True, band_min_seconds=0.5),
    "mf80_bm10": lambda x: deeper_in_mix(x, 80.0, drifted=True, band_min_seconds=1.0),
    "mf80_bm03": lambda x: deeper_in_mix(x, 80.0, drifted=True, band_min_seconds=0.3),
    "mf80_bm05w5": lambda x: deeper_in_mix(x, 80.0, drifted=True, band_min_seconds=0.5, flat_hz=500.0),
    "mf80_kr6": lambda x: deeper_in_mix(x, 80.0, keep_removed_over_db=6.0),
    "mf80_kr12": lambda x: deeper_in_mix(x, 80.0, keep_removed_over_db=12.0),
    "mf80_kr18": lambda x: deeper_in_mix(x, 80.0, keep_removed_over_db=18.0),
    "tone_mts": lambda x: mix_towards(x, np.maximum(
        0.7 * x.voice[..., np.newaxis] * np.clip((1 - x.classic) / 0.5, 0, 1),
        energy_region(x)[..., np.newaxis] * (1 - tonal_removed(x)),
    )),
}


def drift_persistence(x: Inputs, frames: int = 25, quantile: float = 0.1, over_db: float = 3.0, span_db: float = 6.0,
                      peaky_db: float | None = None) -> np.ndarray:
    """:func:`continuity_gain` against the profile scaled, frame by frame, by how far the whole spectrum stands over it
    (the ``quantile`` over bins of the averaged power over the profile, at least 1), as the classic rule's tracker
    lets a measured noise drift: noise that grows louder everywhere is not taken for something that persists over it."""
    from scipy.ndimage import median_filter, uniform_filter1d

    power = uniform_filter1d(x.magnitude.astype(np.float64) ** 2, frames, axis=1, mode="nearest")
    profile = np.maximum(x.noise_power[:, np.newaxis, :], 1e-30)
    drift = np.maximum(np.quantile(power / profile, quantile, axis=-1), 1.0)
    noise = profile * drift[..., np.newaxis]
    weight = np.clip((10 * np.log10(power / noise + 1e-12) - over_db) / span_db, 0, 1)
    if peaky_db is not None:
        width = band_bins(x, 250.0)
        band = median_filter(power, size=(1, 1, width), mode="nearest")
        weight = weight * np.clip((10 * np.log10((power + 1e-30) / (band + 1e-30)) - peaky_db) / span_db, 0, 1)
    return weight * np.clip(1 - noise / np.maximum(power, 1e-30), 0, 1)


def drift_safe(x: Inputs, auto: bool = False, inside: float = 0.0, **options: float) -> np.ndarray:
    """``mts_tp3`` on the classic gain raised to :func:`drift_persistence` away from the profile's tones, outside the
    voice region (``inside`` of it within); with an automatic profile only if ``auto``."""
    if x.auto and not auto:
        return x.destatic
    continuity = drift_persistence(x, **options) * ~x.profile_tones
    outside = 1 - (1 - inside) * energy_region(x)
    raised = np.maximum(x.classic, (continuity * outside[..., np.newaxis]).astype(x.classic.dtype))
    return RULES["mts_tp3"](replace(x, classic=raised))


def pauses_to_learned(x: Inputs, share: float) -> np.ndarray:
    """``ds_q10``, and in the voice region's frames that the voice weight calls "not voice" (pauses and onsets inside
    speech) every bin but the tones at least ``share`` of the way to DFN3's gain (``noise_left.py``: the copy
    machine's clatter is left there)."""
    region = energy_region(x)
    weight = np.maximum(mts_weight(x), share * (region * (1 - x.voice))[..., np.newaxis]) * (1 - tonal_removed(x, over_db=3.0))
    raised = (drift_persistence(x) * ~x.profile_tones * (1 - region)[..., np.newaxis]).astype(x.classic.dtype)
    return mix_towards(replace(x, classic=x.classic if x.auto else np.maximum(x.classic, raised)), weight)


def voice_frames_to_learned(x: Inputs, share: float, pauses: float = 0.0) -> np.ndarray:
    """``ds_q10``, and every bin of voice frames but the tones at least ``share`` of the way to DFN3's gain
    (``noise_left.py``: the vacuum cleaner's noise left sits in the bins the classic rule keeps); ``pauses`` as
    :func:`pauses_to_learned`."""
    region = energy_region(x)
    least = np.maximum(share * x.voice, pauses * region * (1 - x.voice))[..., np.newaxis]
    weight = np.maximum(mts_weight(x), least) * (1 - tonal_removed(x, over_db=3.0))
    raised = (drift_persistence(x) * ~x.profile_tones * (1 - region)[..., np.newaxis]).astype(x.classic.dtype)
    return mix_towards(replace(x, classic=x.classic if x.auto else np.maximum(x.classic, raised)), weight)


def safe_persistence(x: Inputs, frames: int = 25, peaky_db: float | None = 3.0, tones: bool = True, auto: bool = False,
                     inside: float = 0.0, **options: float) -> np.ndarray:
    """``mts_tp3`` on the classic gain raised to :func:`continuity_gain` where a bin persists over the profile AND
    stands ``peaky_db`` out of its band (its median over 250 Hz: steady noise that grows louder raises its whole band)
    AND is not at one of the profile's tones (tones without phase from a separate recording cannot be cancelled);
    outside the voice region (``inside`` of it within). ``auto``: with an automatic profile too, else as destatic.
    """
    if x.auto and not auto:
        return x.destatic
    continuity = continuity_gain(x, frames=frames, peaky_db=peaky_db, **options)
    if tones:
        continuity = continuity * ~x.profile_tones
    outside = 1 - (1 - inside) * energy_region(x)
    raised = np.maximum(x.classic, (continuity * outside[..., np.newaxis]).astype(x.classic.dtype))
    return RULES["mts_tp3"](replace(x, classic=raised))


def frame_lsnr(series: np.ndarray, frames: int, profile: object) -> np.ndarray:
    """DFN3's 10 ms local SNRs interpolated at the centres of destatic's frames."""
    from destatic.dsp import learned

    lead = 0 if profile.centered else profile.n_fft // 2 - (profile.n_fft - profile.hop_length)
    centres = (np.arange(frames) * profile.hop_length + lead) / profile.sample_rate
    return np.interp(centres * learned.DFN_RATE / learned.DFN_FRAME + learned.LSNR_LAG_FRAMES, np.arange(series.size), series)


def capture(noisy: np.ndarray, rate: int, case: quality.Case) -> tuple[Inputs, np.ndarray, object]:
    """Run the hybrid once on ``noisy`` with its mixing rule's inputs captured; return them, its gains and the profile."""
    from destatic.dsp import learned
    from destatic.dsp.denoising import resolve_profile
    from destatic.dsp.framing import checked_profile
    from destatic.dsp.gains import tone_bins
    from destatic.dsp.subtract import compute_gains

    samples = np.asarray(noisy, np.float32).reshape(-1, 1)
    profile = resolve_profile(samples, rate, quality.noise_argument(case), method="hybrid", hum="auto")
    profile = checked_profile(profile, rate, 1)
    seen: dict[str, list] = {"fed": [], "parts": [], "computers": []}
    computer = learned.LearnedGainComputer
    original_mixed, original_fed, original_start, stream = computer._mixed, computer._queue_fed, computer._start, learned.DeepFilterStream

    def mixed(self, learned_gains, ready):
        classic = np.concatenate(list(self._classic), axis=1)[:, :ready]
        voice, _ = self._voice(ready)
        gains = original_mixed(self, learned_gains, ready)
        seen["parts"].append((classic, learned_gains.copy(), voice, gains))
        return gains

    def queue_fed(self, spectra):
        seen["fed"].append(np.abs(spectra))
        original_fed(self, spectra)

    def start(self, channels):
        seen["computers"].append(self)
        original_start(self, channels)

    computer._mixed, computer._queue_fed, computer._start = mixed, queue_fed, start
    learned.DeepFilterStream = lambda *args, **kwargs: stream(*args, **{**kwargs, "keep_lsnr": True})
    try:
        gains = np.concatenate(list(compute_gains([samples], rate, profile, method="hybrid")), axis=1)
    finally:
        computer._mixed, computer._queue_fed, computer._start, learned.DeepFilterStream = original_mixed, original_fed, original_start, stream
    classic, learned_gains, voice, today = (np.concatenate(part, axis=1) for part in zip(*seen["parts"], strict=True))
    assert np.array_equal(today, gains)
    (instance,) = seen["computers"]
    lsnr = np.stack([frame_lsnr(member.take_lsnr(), gains.shape[1], profile) for member in instance._streams])
    magnitude = np.concatenate(seen["fed"], axis=1)[:, : gains.shape[1]]
    classic_floor = np.float32(instance.classic_floor)
    inputs = Inputs(
        classic, np.maximum(learned_gains, classic_floor), voice, lsnr, magnitude, np.asarray(profile.power, np.float64),
        frames_per_second=rate / profile.hop_length, bin_hz=rate / profile.n_fft,
        half_window=round(learned.VOICE_WINDOW_SECONDS * rate / profile.hop_length) // 2, auto=profile.mode == "auto",
        destatic=gains, profile_tones=tone_bins(profile), learned_deep=learned_gains,
        classic_floor=float(classic_floor),
    )
    return inputs, gains, profile


def apply(noisy: np.ndarray, rate: int, gains: np.ndarray, profile: object) -> np.ndarray:
    from destatic.dsp.inverse import apply_gains

    samples = np.asarray(noisy, np.float32).reshape(-1, 1)
    return np.concatenate(list(apply_gains([samples], rate, [gains.astype(np.float32)], profile=profile)))[:, 0]


def score_row(case: quality.Case, label: str, output: np.ndarray, noisy, reference, rate, bed, seconds: float) -> dict:
    output = np.asarray(output, np.float64)
    lag = quality.output_lag(reference, output, rate)
    return {
        "group": case.group, "half": case.half, "corpus": case.corpus, "case": case.name, "noise": case.noise_label,
        "bed": case.bed or "", "snr_db": "" if case.snr_db is None else case.snr_db, "sample_rate": rate,
        "method": label, "is_destatic": True,
        **quality.score_output(case, reference, output, rate, bed, noisy),
        "lag_samples": lag, "lag_ms": 1000 * lag / rate, "length_diff": len(output) - len(noisy), "seconds": seconds,
    }


def run_item(case: quality.Case, rules: tuple[str, ...], cache_dir: Path, cached_only: bool = False) -> list[dict[str, object]]:
    """Every peer and rule's score row of one mixture (from the cache where it is there; ``cached_only``: none if any is not)."""
    result_cache.install_dfn3_cache(cache_dir)
    cache = result_cache.ScoreCache(cache_dir / "rules")
    noisy, reference, rate, bed = case.load()
    mixture = f"{case.group}|{case.name}|{result_cache.samples_digest(noisy, reference)}"
    rows = []
    wanted = {name: f"rule:{name}" for name in rules}
    peers = PEERS if case.group != "c" else ("noisy", "seed")
    if cached_only and (any(cache.get(mixture, f"peer:{peer}", False) is None for peer in peers)
                        or any(cache.get(mixture, wanted[name], True) is None for name in rules)):
        return []
    for peer in peers:
        row = cache.get(mixture, f"peer:{peer}", False)
        if row is None:
            (row,) = quality.run_case(case, (), (peer,), cache_dir)
            cache.put(mixture, f"peer:{peer}", False, row)
        rows.append({**row, "half": case.half})
    missing = [name for name in rules if cache.get(mixture, wanted[name], True) is None]
    if missing:
        began = time.perf_counter()
        inputs, gains, profile = capture(noisy, rate, case)
        captured_s = time.perf_counter() - began
        for name in missing:
            began = time.perf_counter()
            rule_gains = RULES[name](inputs)
            output = apply(noisy, rate, rule_gains, profile)
            if name == "default":  # the harness itself: destatic's own output
                import destatic

                direct = destatic.denoise(noisy, rate, noise=quality.noise_argument(case), method="hybrid")
                assert np.array_equal(output, direct), f"{case.name}: the recomputed default is not destatic's output"
            row = score_row(case, f"rule:{name}", output, noisy, reference, rate, bed, captured_s + time.perf_counter() - began)
            row.update(scene_statistics(inputs))
            cache.put(mixture, wanted[name], True, row)
    for name in rules:
        rows.append({**cache.get(mixture, wanted[name], True), "half": case.half, "noise": case.noise_label})
    return rows


def compact_table(rows: list[dict[str, object]], summary: list[dict[str, object]]) -> str:
    """One line per method and half: each group's means, and group a's worst noise against DFN3's PESQ."""
    header = ["method", "half", "a PESQ", "a STOI", "a SI-SDR", "a worst noise - dfn3", "b PESQ", "b STOI", "b SI-SDR",
              "b worst - dfn3", "c SI-SDR", "d SI-SDR", "d bed dB", "e PESQ", "e noise dB", "e most noise left - default"]
    body = []
    for method in dict.fromkeys(s["method"] for s in summary):
        for half in quality.HALVES:
            cells = {}
            for group in "abcde":
                entry = quality._find(summary, group, half, method)
                for metric in quality.GROUP_METRICS[group]:
                    cells[f"{group} {metric}"] = float("nan") if entry is None else entry[metric]
                if group in "ab" and entry is not None and quality._find(summary, group, half, "dfn3") is not None:
                    mine, theirs = (quality._noise_means(rows, group, half, m, "pesq") for m in (method, "dfn3"))
                    worst = min(mine, key=lambda noise: mine[noise] - theirs[noise])
                    cells[f"{group} worst"] = f"{mine[worst] - theirs[worst]:+.2f} {worst}"
                if group == "e" and entry is not None and quality._find(summary, group, half, "rule:default") is not None:
                    mine, theirs = (quality._noise_means(rows, group, half, m, "noise_db") for m in (method, "rule:default"))
                    worst = max(mine, key=lambda kind: mine[kind] - theirs[kind])
                    cells["e worst"] = f"{mine[worst] - theirs[worst]:+.2f} {worst}"
            if not any(isinstance(v, str) or np.isfinite(v) for v in cells.values()):
                continue
            body.append([method, half] + [cells.get(key, "-") for key in (
                "a pesq", "a stoi", "a si_sdr", "a worst", "b pesq", "b stoi", "b si_sdr", "b worst", "c si_sdr", "d si_sdr", "d bed_db",
                "e pesq", "e noise_db", "e worst")])
    return quality.markdown_table(header, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--half", choices=(*quality.HALVES, "both"), default="tune")
    parser.add_argument("--groups", default="abde")
    parser.add_argument("--quick", action="store_true", help="quality.py's --quick subset")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=common.OUT_DIR / "cache")
    parser.add_argument("--cached-only", action="store_true", help="tabulate only the items already scored for every rule")
    args = parser.parse_args(argv)
    common.require_media()
    halves = quality.HALVES if args.half == "both" else (args.half,)
    cases = quality.all_cases(args.groups, quick=args.quick, halves=halves)
    if any(case.kind == "stereo" for case in cases):
        print("group e's stereo items are left out: the capture is mono (run quality.py for them)", file=sys.stderr)
        cases = [case for case in cases if case.kind != "stereo"]
    cases.sort(key=lambda case: case.group in "ad" and case.corpus == "librispeech", reverse=True)
    rules = tuple(dict.fromkeys(["default", *args.rules]))
    began = time.perf_counter()
    print(f"{len(cases)} cases, rules {', '.join(rules)}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done, result in enumerate(pool.map(run_item, cases, [rules] * len(cases), [args.cache] * len(cases), [args.cached_only] * len(cases)), 1):
            rows += result
            print(f"\r{done}/{len(cases)} cases, {time.perf_counter() - began:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    summary = quality.summarise(rows)
    for group, table in quality.summary_tables(rows, summary).items():
        print(f"## Group {quality.GROUP_TITLES[group]}\n\n{table}\n")
    print(compact_table(rows, summary) + "\n")
    print("## Issue 30's targets (baseline: rule:default)\n")
    print(quality.targets_table(quality.targets(rows, summary, "rule:default")))
    print(f"\n{time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
