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
import scipy.ndimage
import scipy.signal

__all__ = ["NoiseTracker", "min_window_frames", "minimum_bias", "smoothing_factor"]

SMOOTHING_SECONDS = 0.04
MIN_WINDOW_SECONDS = 1.5
PRESENCE_RATIO = 3.0
PRESENCE_SMOOTHING_SECONDS = 0.03
NOISE_UPDATE_SECONDS = 0.2


def smoothing_factor(seconds: float, sample_rate: int, hop_length: int) -> float:
    """One-pole smoothing coefficient giving time constant ``seconds`` at this hop."""
    return math.exp(-hop_length / (sample_rate * seconds))


def min_window_frames(sample_rate: int, hop_length: int) -> int:
    """Frames in the 1.5 s minimum-statistics window (at least 8)."""
    return max(8, round(MIN_WINDOW_SECONDS * sample_rate / hop_length))


def smooth_bins(power: np.ndarray) -> np.ndarray:
    """Smooth power over frequency with the kernel (1/4, 1/2, 1/4), edges repeated."""
    padded = np.concatenate([power[..., :1], power, power[..., -1:]], axis=-1)
    return 0.5 * power + 0.25 * (padded[..., :-2] + padded[..., 2:])


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
    smoothed = scipy.signal.lfilter(
        [1 - smoothing], [1, -smoothing], power, axis=0, zi=np.full((1, power.shape[1]), smoothing * mean)
    )[0]
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

    Notes
    -----
    :meth:`update` is chunk-invariant: feeding frames in any grouping gives the
    same estimates.
    """

    def __init__(self, initial_power: np.ndarray, *, sample_rate: int, n_fft: int, hop_length: int):
        initial = np.maximum(np.asarray(initial_power, np.float64), np.finfo(np.float32).tiny)
        channels, bins = initial.shape
        self.window = min_window_frames(sample_rate, hop_length)
        self.smoothing = smoothing_factor(SMOOTHING_SECONDS, sample_rate, hop_length)
        self.bias = minimum_bias(self.window, n_fft // hop_length, self.smoothing)
        self.presence_smoothing = smoothing_factor(
            PRESENCE_SMOOTHING_SECONDS, sample_rate, hop_length
        )
        self.noise_smoothing = smoothing_factor(NOISE_UPDATE_SECONDS, sample_rate, hop_length)
        self._smooth_state = (self.smoothing * initial)[:, np.newaxis, :]
        self._history = np.repeat((initial / self.bias)[:, np.newaxis, :], self.window - 1, axis=1)
        self._presence_state = np.zeros((channels, 1, bins))
        self._noise = initial.copy()

    def update(self, power: np.ndarray) -> np.ndarray:
        """Take ``|Y|^2`` of shape ``(channels, frames, bins)``; return the noise power per frame."""
        n_frames = power.shape[1]
        if n_frames == 0:
            return np.zeros(power.shape, np.float32)
        a = self.smoothing
        smoothed, self._smooth_state = scipy.signal.lfilter(
            [1 - a], [1, -a], smooth_bins(power.astype(np.float64)), axis=1, zi=self._smooth_state
        )
        extended = np.concatenate([self._history, smoothed], axis=1)
        minimum = scipy.ndimage.minimum_filter1d(
            extended, self.window, axis=1, origin=(self.window - 1) // 2
        )[:, self.window - 1 :]
        self._history = extended[:, -(self.window - 1) :]
        speech = (smoothed > PRESENCE_RATIO * self.bias * minimum).astype(np.float64)
        b = self.presence_smoothing
        presence, self._presence_state = scipy.signal.lfilter(
            [1 - b], [1, -b], speech, axis=1, zi=self._presence_state
        )
        keep = self.noise_smoothing + (1 - self.noise_smoothing) * presence
        update = (1 - keep) * power
        noise = np.empty(power.shape, np.float64)
        current = self._noise
        for frame in range(n_frames):
            current = keep[:, frame] * current + update[:, frame]
            noise[:, frame] = current
        self._noise = current
        return noise.astype(np.float32)
