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
    The 1.5 s minimum is kept as the minima of 8 sub-windows (Martin), so each
    frame costs a few operations on ``(channels, bins)`` arrays; the result
    does not depend on how frames are grouped into calls.
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
        channels, bins = initial.shape
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
        self._smoothed = initial.copy()
        self._ring = np.repeat(seeded_minimum[:, np.newaxis, :], self.SUBWINDOWS - 1, axis=1)
        self._ring_index = 0
        self._ring_minimum = seeded_minimum.copy()
        self._sub_minimum = seeded_minimum.copy()
        self._sub_count = 0
        self._noise = initial.copy()

    def update(self, power: np.ndarray) -> np.ndarray:
        """Take ``|Y|^2``, shape ``(channels, frames, bins)``; return the noise power per frame."""
        n_frames = power.shape[1]
        a = np.float32(self.smoothing)
        fresh = smooth_bins(power)
        fresh *= 1 - a
        smoothed = np.empty(power.shape, np.float32)
        running = np.empty(power.shape, np.float32)
        minimum = np.empty(power.shape, np.float32)
        previous, sub_minimum = self._smoothed, self._sub_minimum
        start = 0
        for frame in range(n_frames):
            current = smoothed[:, frame]
            np.multiply(previous, a, out=current)
            current += fresh[:, frame]
            np.minimum(sub_minimum, current, out=running[:, frame])
            previous, sub_minimum = current, running[:, frame]
            self._sub_count += 1
            if self._sub_count == self.subwindow:
                np.minimum(running[:, start : frame + 1], self._ring_minimum[:, np.newaxis, :],
                           out=minimum[:, start : frame + 1])
                start = frame + 1
                self._ring[:, self._ring_index] = sub_minimum
                self._ring_index = (self._ring_index + 1) % self._ring.shape[1]
                self._ring_minimum = self._ring.min(axis=1)
                sub_minimum = current
                self._sub_count = 0
        np.minimum(running[:, start:], self._ring_minimum[:, np.newaxis, :], out=minimum[:, start:])
        self._smoothed = previous.copy()
        self._sub_minimum = sub_minimum.copy()
        speech = smoothed > np.float32(PRESENCE_RATIO * self.bias) * minimum
        keep = np.where(speech, np.float32(1.0), np.float32(self.noise_smoothing))
        fresh_noise = (1 - keep) * power
        noise = smoothed
        estimate = self._noise
        for frame in range(n_frames):
            current = noise[:, frame]
            np.multiply(estimate, keep[:, frame], out=current)
            current += fresh_noise[:, frame]
            estimate = current
        self._noise = estimate.copy()
        return noise
