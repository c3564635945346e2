"""Noise power estimation without a noise-only stretch: minimum statistics and MCRA.

The periodogram ``|Y|^2`` is smoothed over about 40 ms and 3 bins; its minimum
over a 1.5 s window, times a bias factor measured for exactly this smoothing,
estimates the noise power even while someone speaks (Martin 2001). The
tracker used while denoising then averages ``|Y|^2`` only where the smoothed
power stays close to that minimum, i.e. where speech is probably absent
(Cohen's MCRA), so it follows slow drift and stays steady under speech.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["NoiseTracker", "min_window_frames", "minimum_bias", "one_pole", "smoothing_factor"]

SMOOTHING_SECONDS = 0.04
MIN_WINDOW_SECONDS = 1.5
PRESENCE_RATIO = 3.0
NOISE_UPDATE_SECONDS = 0.2
PROFILED_NOISE_UPDATE_SECONDS = 1.0


def smoothing_factor(seconds: float, sample_rate: int, hop_length: int) -> float:
    """One-pole smoothing coefficient giving time constant ``seconds`` at this hop."""
    return math.exp(-hop_length / (sample_rate * seconds))


def min_window_frames(sample_rate: int, hop_length: int, seconds: float = MIN_WINDOW_SECONDS) -> int:
    """Frames in a minimum-statistics window of `seconds` (1.5 s: Martin's; at least 8)."""
    return max(8, round(seconds * sample_rate / hop_length))


def smooth_bins(power: np.ndarray) -> np.ndarray:
    """Smooth power over frequency with the kernel (1/4, 1/2, 1/4), edges repeated."""
    quarter = power * np.float32(0.25) if power.dtype == np.float32 else power * 0.25
    smoothed = quarter + quarter
    smoothed[..., 1:] += quarter[..., :-1]
    smoothed[..., :-1] += quarter[..., 1:]
    smoothed[..., 0] += quarter[..., 0]
    smoothed[..., -1] += quarter[..., -1]
    return smoothed


def one_pole(
    values: np.ndarray, smoothing: float, previous: np.ndarray, *, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth along ``axis``: ``y[t] = a y[t-1] + (1 - a) x[t]``, continuing from ``previous``.

    Parameters
    ----------
    values : np.ndarray
        ``x``, any shape; ``axis`` counts frames.
    smoothing : float
        ``a``, in [0, 1).
    previous : np.ndarray
        ``y[-1]``, shaped like ``values`` without ``axis``.

    Returns
    -------
    smoothed, last : np.ndarray
        ``y`` shaped like ``values``, and its last frame (the state for the next call).
    """
    frames = np.moveaxis(values, axis, 0)
    if frames.dtype == np.float64 and frames.shape[0]:
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        flat = np.ascontiguousarray(frames).reshape(frames.shape[0], -1)
        last = np.array(np.broadcast_to(previous, frames.shape[1:]), np.float64).reshape(-1)
        smoothed = np.empty_like(flat)
        _kernels.one_pole_into(flat, float(smoothing), last, smoothed)
        return np.moveaxis(smoothed.reshape(frames.shape), 0, axis), last.reshape(frames.shape[1:])
    fresh = frames * (1 - smoothing)
    smoothed = np.empty_like(fresh)
    last = np.asarray(previous, dtype=fresh.dtype)
    for index in range(frames.shape[0]):
        np.multiply(last, smoothing, out=smoothed[index])
        smoothed[index] += fresh[index]
        last = smoothed[index]
    return np.moveaxis(smoothed, 0, axis), last.copy()


@functools.lru_cache(maxsize=64)
def minimum_bias(window: int, overlap: int, smoothing: float) -> float:
    """Mean over minimum of the smoothed periodogram of white Gaussian noise.

    Measured once per setting on seeded synthetic noise framed exactly like
    the engine (Hann, ``overlap`` = ``n_fft // hop``), so the factor includes
    the correlation that overlap and smoothing introduce.

    Parameters
    ----------
    window : int
        Frames the minimum is taken over.
    overlap : int
        ``n_fft // hop_length``.
    smoothing : float
        Per-frame one-pole smoothing coefficient.
    """
    n_fft = 64
    hop = n_fft // overlap
    windows = max(40, 12_000 // window)
    n_frames = windows * window
    noise = np.random.default_rng(7).standard_normal(n_frames * hop + n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(noise, n_fft)[::hop][:n_frames]
    window_fn = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * window_fn, axis=-1))[:, 2:-2] ** 2
    power = smooth_bins(power)
    mean = power.mean()
    smoothed, _ = one_pole(power, smoothing, np.full(power.shape[1], mean), axis=0)
    minima = smoothed.reshape(windows, window, -1).min(axis=1)
    return float(mean / minima.mean())


class NoiseTracker:
    """Follow the noise power per channel and bin through a stream of frames.

    Parameters
    ----------
    initial_power : np.ndarray [shape=(channels, bins)]
        Starting estimate (a profile's power); the tracker behaves as if the
        stream had been preceded by noise of exactly this power.
    sample_rate : int
        Hz.
    n_fft, hop_length : int
        Framing of the spectra passed to :meth:`update`.
    update_seconds : float
        Time constant of the noise update where speech is absent: short when
        the initial estimate is a guess (``auto``), longer when it was
        measured on noise only, so the estimate wanders less.
    window_seconds : float
        The minimum-statistics window (1.5 s; longer keeps the tracker off
        notes held for a while, at the cost of following rising noise later).

    Notes
    -----
    The 1.5 s minimum is kept as the minima of 8 sub-windows (Martin). The
    state lives in arrays that the compiled frame loop
    (:func:`destatic.dsp._kernels.suppression_gains`, or :meth:`update`
    alone) updates in place; the result does not depend on how frames are
    grouped into calls.
    """

    SUBWINDOWS = 8

    def __init__(
        self,
        initial_power: np.ndarray,
        *,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        update_seconds: float = NOISE_UPDATE_SECONDS,
        window_seconds: float = MIN_WINDOW_SECONDS,
    ):
        initial = np.maximum(np.asarray(initial_power, np.float32), np.finfo(np.float32).tiny)
        window = min_window_frames(sample_rate, hop_length, window_seconds)
        self.subwindow = -(-window // self.SUBWINDOWS)
        self.smoothing = smoothing_factor(SMOOTHING_SECONDS, sample_rate, hop_length)
        self.bias = minimum_bias(
            self.subwindow * self.SUBWINDOWS - self.subwindow // 2,
            n_fft // hop_length,
            self.smoothing,
        )
        self.noise_smoothing = smoothing_factor(update_seconds, sample_rate, hop_length)
        seeded_minimum = initial / np.float32(self.bias)
        self.state = np.ascontiguousarray(np.stack([initial, seeded_minimum, seeded_minimum, initial], axis=1))
        """(channels, 4, bins): power smoothed over time, running minimum of the sub-window, minimum of the ring, estimate."""
        self.ring = np.repeat(seeded_minimum[:, np.newaxis, :], self.SUBWINDOWS - 1, axis=1)
        """(channels, 7, bins): the minima of the last finished sub-windows."""
        self.counters = np.zeros(2, np.int64)
        """The ring's next slot and the frames of the current sub-window."""
        self.constants = np.array(
            [self.smoothing, PRESENCE_RATIO * self.bias, self.noise_smoothing], np.float64
        ).astype(np.float32)
        """float32: time smoothing of the power, speech threshold over the minimum, weight of the old estimate."""

    @property
    def noise(self) -> np.ndarray:
        """The current estimate, ``(channels, bins)``."""
        return self.state[:, 3]

    def update(self, power: np.ndarray) -> np.ndarray:
        """Take ``|Y|^2``, shape ``(channels, frames, bins)``; return the noise power per frame."""
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        power = np.ascontiguousarray(power, np.float32)
        noise = np.empty(power.shape, np.float32)
        smoothing, threshold, keep = self.constants
        _kernels.track_noise(power, self.state, self.ring, self.counters, smoothing, threshold, keep, self.subwindow, noise)
        return noise
