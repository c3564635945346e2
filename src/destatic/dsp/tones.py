"""Steady tones (mains hum and its harmonics): found in a noise clip, subtracted coherently.

A spectral gain can only scale a bin, so where a tone shares a bin with
speech it either stays or takes the speech with it. A steady tone is
predictable instead: :func:`find_tones` locates its frequency to a small
fraction of a hertz in the noise clip, :func:`fit_tones` measures its
amplitude and phase, and :class:`ToneCanceller` subtracts the predicted
waveform sample by sample while following slow changes of amplitude, phase
and frequency (a demodulator per tone with a 10 s time constant, and one
drift shared by the harmonics). What is left goes to the spectral
suppressor like any other noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = [
    "ToneCanceller",
    "ToneStage",
    "Tones",
    "blackman_harris",
    "find_peaks",
    "find_hum",
    "find_tones",
    "fit_tones",
    "harmonic_family",
    "hum_in_segments",
    "hum_segments",
    "mains_series",
    "spectral_peaks",
]

TONE_PROMINENCE_DB = 25.0
"""How far above the local noise floor a spectral peak must stand to count as a tone."""
MIN_TONE_SECONDS = 0.1
MAX_TONES = 32
MIN_HARMONICS = 3
HARMONIC_TOLERANCE = 0.003
LOWEST_TONE_HZ = 20.0
TRACKING_SECONDS = 10.0
UPDATE_SECONDS = 0.02
DRIFT_GAIN = 1e-2
MAX_DRIFT_HZ = 0.5
FIT_CHUNK = 1 << 15
TONE_ANALYSIS_SECONDS = 4.0
"""How much of a measured noise clip is searched for steady tones."""

Tones = tuple[np.ndarray, np.ndarray]
"""Steady tones found beforehand: frequencies in Hz ``(tones,)`` and complex amplitudes ``(channels, tones)`` referred to sample 0."""


def find_tones(noise: np.ndarray, sample_rate: int) -> np.ndarray:
    """Frequencies of steady tones in a noise-only clip.

    Parameters
    ----------
    noise : np.ndarray [shape=(n, channels)]
        Noise only, at least 0.1 s.
    sample_rate : int
        Hz.

    Returns
    -------
    np.ndarray [shape=(tones,), dtype=float64]
        Hz, ascending; peaks of the Blackman-Harris spectrum (all channels'
        power) at least 25 dB above the median level around them, from 20 Hz
        to 0.45 of the rate, refined by parabolic interpolation, and kept
        only if they form a harmonic series (:func:`harmonic_family`).
    """
    if noise.shape[0] < MIN_TONE_SECONDS * sample_rate:
        return np.zeros(0)
    return harmonic_family(spectral_peaks(noise, sample_rate, prominence_db=TONE_PROMINENCE_DB))


def spectral_peaks(
    clip: np.ndarray, sample_rate: int, *, prominence_db: float, highest: int = MAX_TONES
) -> np.ndarray:
    """Frequencies of the peaks standing ``prominence_db`` above the median level around them, ascending.

    The clip's Blackman-Harris spectrum (:func:`clip_spectrum`), peaks from
    20 Hz to 0.45 of the rate at least 6 bins of the unpadded spectrum
    apart, the ``highest`` highest, refined by parabolic interpolation
    (:func:`level_peaks`).
    """
    level, hz_per_bin, per_bin = clip_spectrum(clip, sample_rate)
    return level_peaks(
        level, hz_per_bin, per_bin, prominence_db=prominence_db, highest=highest, top_hz=0.45 * sample_rate
    )


def clip_spectrum(
    clip: np.ndarray, sample_rate: int, *, bins: int | None = None, scratch: SpectrumScratch | None = None
) -> tuple[np.ndarray, float, float]:
    """The Blackman-Harris level spectrum of a ``(n, channels)`` clip: all channels' power in dB, zero-padded to 8 times its length or more.

    Returns the level of the first `bins` bins (all of them if None), the
    bins' spacing in Hz and the padding factor (bins per bin of the unpadded
    spectrum). The transforms are float32 (half the time of float64, and
    their error, some 130 dB under the clip's level, far below any floor a
    tone is measured against). `scratch` keeps the window and the padded
    signal from one clip of a shape to the next.
    """
    import scipy.fft  # noqa: PLC0415  (loaded by the STFT anyway; not by importing destatic)

    n, channels = clip.shape
    if scratch is None or (scratch.length, scratch.channels) != (n, channels):
        scratch = SpectrumScratch(n, channels)
    power = None
    for channel in range(channels):  # one transform at a time: a 2 s clip pads to 2**20 samples, 8 MB of spectrum each
        np.multiply(clip[:, channel], scratch.window, out=scratch.signal[:n])
        part = np.square(np.abs(scipy.fft.rfft(scratch.signal)[:bins]), dtype=np.float64)
        power = part if power is None else np.add(power, part, out=power)
    return 10 * np.log10(power + 1e-30), sample_rate / scratch.padded, scratch.padded / n


class SpectrumScratch:
    """The window and the zero-padded signal (one channel's) :func:`clip_spectrum` uses for clips of `length` samples and `channels` channels."""

    def __init__(self, length: int, channels: int) -> None:
        self.length = length
        self.channels = channels
        self.padded = padded_length(length)
        self.window = blackman_harris(length).astype(np.float32)
        self.signal = np.zeros(self.padded, np.float32)


def padded_length(n: int) -> int:
    """The FFT length of :func:`clip_spectrum` for an `n`-sample clip: the power of 2 at least 8 times `n`."""
    return 1 << int(math.ceil(math.log2(8 * n)))


def prominence(level: np.ndarray, per_bin: float) -> np.ndarray:
    """How far each bin of a level spectrum (dB) stands above the median level of the 40 unpadded bins around it (40 Hz for a 1 s clip)."""
    import scipy.ndimage  # noqa: PLC0415  (imported here: only clips searched for tones need it)

    return level - scipy.ndimage.median_filter(level, size=int(40 * per_bin) | 1, mode="nearest")


def level_peaks(
    level: np.ndarray, hz_per_bin: float, per_bin: float, *, prominence_db: float, highest: int, top_hz: float
) -> np.ndarray:
    """Frequencies of the peaks of a level spectrum from :func:`clip_spectrum` (see :func:`spectral_peaks`), below ``top_hz``."""
    floor = level - prominence(level, per_bin)
    peaks = find_peaks(level, floor + prominence_db, max(1, int(6 * per_bin)))
    peaks = peaks[(peaks * hz_per_bin >= LOWEST_TONE_HZ) & (peaks * hz_per_bin <= top_hz) & (peaks < level.size - 1)]
    peaks = np.sort(peaks[np.argsort(level[peaks])[::-1][:highest]])
    return refined_bins(level, peaks) * hz_per_bin


def refined_bins(level: np.ndarray, peaks: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The peaks' fractional bins by parabolic interpolation of the level around them (of row ``rows[i]`` for peak ``i`` of a 2-D ``level``)."""
    at_row = (lambda bins: level[bins]) if rows is None else (lambda bins: level[rows, bins])
    before, at, after = at_row(peaks - 1), at_row(peaks), at_row(peaks + 1)
    curvature = before - 2 * at + after
    return peaks + np.where(curvature < 0, 0.5 * (before - after) / np.where(curvature < 0, curvature, -1), 0)


BLACKMAN_HARRIS = (0.35875, 0.48829, 0.14128, 0.01168)
"""The 4-term Blackman-Harris window's cosine weights (Harris 1978)."""


def blackman_harris(n: int) -> np.ndarray:
    """The symmetric 4-term Blackman-Harris window of ``n`` samples (float64), as ``scipy.signal.windows.blackmanharris``.

    Written out so that finding tones does not import scipy.signal (about
    0.9 s of CPU, most of a fresh process's first call).
    """
    if n <= 1:
        return np.ones(n)
    phase = np.linspace(-np.pi, np.pi, n)
    window = np.zeros(n)
    for k, weight in enumerate(BLACKMAN_HARRIS):
        window += weight * np.cos(k * phase)
    return window


def find_peaks(level: np.ndarray, height: np.ndarray, distance: int) -> np.ndarray:
    """Indices of the local maxima of ``level`` at least ``height`` (per index) high and ``distance`` apart, ascending.

    ``scipy.signal.find_peaks(level, height=height, distance=distance)``: a
    maximum is a run of equal values higher than the values on either side,
    not touching either end, at the run's middle (rounded down); of maxima
    closer than ``distance``, the higher is kept, the higher ones first.
    """
    edges = np.flatnonzero(np.diff(level)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [level.size]]) - 1
    values = level[starts]
    inside = (starts > 0) & (ends < level.size - 1)
    higher = np.zeros(starts.size, bool)
    higher[1:-1] = (values[1:-1] > values[:-2]) & (values[1:-1] > values[2:])
    peaks = (starts + ends)[inside & higher] // 2
    peaks = peaks[level[peaks] >= height[peaks]]
    if distance <= 1 or peaks.size < 2:
        return peaks
    keep = np.ones(peaks.size, bool)
    for j in np.argsort(level[peaks])[::-1]:
        if not keep[j]:
            continue
        near = np.abs(peaks - peaks[j]) < distance
        near[j] = False
        keep &= ~near
    return peaks[keep]


def harmonic_family(frequencies: np.ndarray) -> np.ndarray:
    """The largest set of ``frequencies`` that are harmonics of one fundamental, if it has 3 or more.

    Mains hum and buzz come as a series locked to the grid frequency, stable
    enough to predict; a lone tone (a motor's whine) wanders and is left to
    the spectral suppressor. Harmonics must lie within 0.3 % of ``k * f0``.
    """
    best = np.zeros(0)
    for candidate in frequencies[:MAX_TONES]:
        for order in range(1, 6):
            fundamental = candidate / order
            if fundamental < LOWEST_TONE_HZ:
                break
            ratio = frequencies / fundamental
            members = frequencies[np.abs(ratio - np.round(ratio)) < HARMONIC_TOLERANCE * ratio]
            if members.size > best.size:
                best = members
    return best if best.size >= MIN_HARMONICS else np.zeros(0)


def _phasors(
    frequencies: np.ndarray, sample_rate: int, start: int, count: int, *, stride: int = 1
) -> np.ndarray:
    """``exp(j 2 pi f n / rate)`` for ``n = start + stride * k``, ``k < count``; shape ``(count, tones)``."""
    cycles = np.outer(start + stride * np.arange(count, dtype=np.float64), frequencies / sample_rate)
    return np.exp(2j * np.pi * np.mod(cycles, 1.0))


def fit_tones(noise: np.ndarray, sample_rate: int, frequencies: np.ndarray, *, start: int = 0) -> np.ndarray:
    """Complex amplitude of each tone in a noise-only clip, referred to sample 0 of its stream.

    The tone model is ``2 Re(A exp(j 2 pi f n / rate))`` with ``n`` counted
    from the start of the stream; the clip starts at sample ``start``.

    Returns
    -------
    np.ndarray [shape=(channels, tones), dtype=complex128]
    """
    channels = noise.shape[1]
    total = np.zeros((channels, frequencies.size), np.complex128)
    weights = np.hanning(noise.shape[0] + 2)[1:-1]
    for offset in range(0, noise.shape[0], FIT_CHUNK):
        part = noise[offset : offset + FIT_CHUNK].astype(np.float64)
        weight = weights[offset : offset + FIT_CHUNK, np.newaxis]
        conjugate = _phasors(frequencies, sample_rate, start + offset, part.shape[0]).conj()
        total += (part * weight).T @ conjugate
    return total / weights.sum()


class ToneCanceller:
    """Subtract known steady tones from a stream of blocks, following their amplitude and phase.

    Parameters
    ----------
    frequencies : np.ndarray [shape=(tones,)]
        Hz, from :func:`find_tones`.
    amplitudes : np.ndarray [shape=(channels, tones), complex]
        Starting amplitudes from :func:`fit_tones` (zeros: learn them).
    sample_rate : int
        Hz.

    Notes
    -----
    The amplitudes are re-estimated every 20 ms from the demodulated signal
    (one-pole, ``TRACKING_SECONDS``), each from the samples before it, so the
    result does not depend on how the stream is cut into blocks. Cost: two
    small matrix products per block and a few operations per 20 ms step.
    """

    def __init__(self, frequencies: np.ndarray, amplitudes: np.ndarray, sample_rate: int):
        self.frequencies = np.asarray(frequencies, np.float64)
        self.sample_rate = sample_rate
        self.step = max(1, round(UPDATE_SECONDS * sample_rate))
        self.smoothing = math.exp(-self.step / (TRACKING_SECONDS * sample_rate))
        self.amplitudes = np.array(amplitudes, np.complex128)
        self.position = 0
        self._sum = np.zeros_like(self.amplitudes)
        self._agreement = (np.abs(self.amplitudes) ** 2).sum(axis=0)
        self._predicted_power = self._agreement.copy()
        fundamental = self.frequencies.min() if self.frequencies.size else 1.0
        self.orders = np.maximum(np.round(self.frequencies / fundamental), 1.0)
        self.drift = 0.0
        self.max_drift = 2 * np.pi * MAX_DRIFT_HZ * self.step / sample_rate
        self._table = _phasors(self.frequencies, sample_rate, 0, self.step)

    def process(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Take a ``(n, channels)`` float32 block; return ``(block - tones, tones)``."""
        tones = np.empty(block.shape, np.float32)
        done = 0
        while done < block.shape[0]:
            offset = self.position % self.step
            if offset == 0 and block.shape[0] - done >= self.step:
                count = (block.shape[0] - done) // self.step * self.step
                tones[done : done + count] = self._whole_steps(block[done : done + count])
            else:
                count = min(self.step - offset, block.shape[0] - done)
                tones[done : done + count] = self._part_of_step(block[done : done + count], offset)
            done += count
        return block - tones, tones

    def _rotation(self, start: int, steps: int) -> np.ndarray:
        """The tones' phasors at the first sample of each of `steps` steps from `start`."""
        return _phasors(self.frequencies, self.sample_rate, start, steps, stride=self.step)

    def _part_of_step(self, samples: np.ndarray, offset: int) -> np.ndarray:
        start = self.position - offset
        rotation = self._rotation(start, 1)[0]
        table = self._table[offset : offset + samples.shape[0]]
        tones = 2 * ((self._prediction() * self._weight() * rotation) @ table.T).real.T
        self._sum += samples.astype(np.float64).T @ (table.conj() * rotation.conj())
        self.position += samples.shape[0]
        if self.position % self.step == 0:
            self._update(self._sum[np.newaxis] / self.step)
            self._sum = np.zeros_like(self._sum)
        return tones.astype(np.float32)

    def _whole_steps(self, samples: np.ndarray) -> np.ndarray:
        steps = samples.shape[0] // self.step
        channels = samples.shape[1]
        rotation = self._rotation(self.position, steps)
        shaped = samples.astype(np.float64).reshape(steps, self.step, channels).transpose(0, 2, 1)
        means = (shaped @ self._table.conj()) * rotation.conj()[:, np.newaxis, :] / self.step
        starts = self._update(means)
        tones = (starts * rotation[:, np.newaxis, :]) @ self._table.T
        self.position += samples.shape[0]
        return 2 * tones.real.transpose(0, 2, 1).reshape(samples.shape).astype(np.float32)

    def _prediction(self) -> np.ndarray:
        """The amplitudes expected in the coming step: the last estimate turned by the drift."""
        return self.amplitudes * np.exp(1j * self.drift * self.orders)

    def _weight(self) -> np.ndarray:
        """How much of each predicted tone to subtract: the least-squares fit of prediction to signal, in [0, 1]."""
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = np.where(self._predicted_power > 0, self._agreement / self._predicted_power, 1.0)
        return np.clip(fit, 0.0, 1.0)

    def _update(self, means: np.ndarray) -> np.ndarray:
        """Feed per-step demodulated means ``(steps, channels, tones)``; return the amplitudes to subtract in each step.

        Each step subtracts the amplitude predicted before it: the last
        estimate turned by the tones' tracked drift (all harmonics drift
        together, so one rotation rate of the fundamental is followed),
        scaled by how well predictions have matched the signal lately, so a
        tone that cannot be followed fades out instead of being added back.
        """
        a = np.float64(self.smoothing)
        used = np.empty_like(means)
        for step, mean in enumerate(means):
            predicted = self._prediction()
            used[step] = predicted * self._weight()
            error = (mean * predicted.conj()).sum(axis=0)
            power = (np.abs(predicted) ** 2).sum(axis=0)
            if power.sum() > 0:
                self.drift += DRIFT_GAIN * np.sum(power * np.angle(error) / self.orders) / power.sum()
                self.drift = float(np.clip(self.drift, -self.max_drift, self.max_drift))
            self.amplitudes = a * predicted + (1 - a) * mean
            self._agreement = a * self._agreement + (1 - a) * error.real
            self._predicted_power = a * self._predicted_power + (1 - a) * power
        return used


MAINS_HZ = (50.0, 60.0)
"""The grid frequencies whose hum :func:`find_hum` looks for."""
HUM_TOLERANCE_HZ = 1.5
"""How far a hum's fundamental may be from the nominal grid frequency."""
HUM_PROMINENCE_DB = 10.0
"""How far above the median level around it a harmonic must stand in the clips' average spectrum."""
HUM_CLIP_PROMINENCE_DB = 6.0
"""How far above the median level around it a harmonic must stand in one clip, with speech or music over it, to be present there."""
HUM_SEGMENT_SECONDS = 2.0
HUM_SEGMENTS = 32
"""Stretches of :data:`HUM_SEGMENT_SECONDS` spread through the file that :func:`find_hum` reads (64 s at most)."""
HUM_MIN_SEGMENTS = 4
"""Fewer stretches than this (a file under 8 s) are too little evidence: no hum is looked for."""
HUM_PRESENCE = 0.8
"""The share of stretches a series, and each harmonic kept, must be found in."""
HUM_MAX_SPREAD_HZ = 0.5
"""How far the fundamental may wander between stretches and still be one hum."""
HUM_LOW_ORDERS = 6
"""Hum is strongest low down: :data:`MIN_HARMONICS` of the harmonics kept must be among the first six."""
HUM_MAX_ORDER = 24
"""The highest harmonic looked for (1.2 kHz at 50 Hz): above it, peaks line up with some series by chance."""


def hum_segments(frames: int, sample_rate: int) -> list[tuple[int, int]]:
    """The stretches ``[start, stop)`` of a ``frames``-sample stream that :func:`find_hum` reads: the first at sample 0, spread evenly, none if too few fit."""
    length = round(HUM_SEGMENT_SECONDS * sample_rate)
    count = min(HUM_SEGMENTS, frames // length)
    if count < HUM_MIN_SEGMENTS:
        return []
    starts = np.round(np.linspace(0, frames - length, count)).astype(np.int64)
    return [(int(start), int(start) + length) for start in starts]


def mains_series(peaks: np.ndarray, nominal: float) -> tuple[float, np.ndarray]:
    """The fundamental and harmonic orders of the largest harmonic series among ``peaks`` whose fundamental is near ``nominal``.

    Parameters
    ----------
    peaks : np.ndarray [shape=(peaks,)]
        Hz, from :func:`spectral_peaks`.
    nominal : float
        50 or 60 Hz; the fundamental must be within :data:`HUM_TOLERANCE_HZ`.

    Returns
    -------
    fundamental : float
        Hz, the least-squares fit of the members' frequencies to ``k * f0``
        (NaN when no series of :data:`MIN_HARMONICS` or more is found).
    orders : np.ndarray [shape=(members,), dtype=int64]
        The ``k`` found, ascending (the fundamental itself need not be among them).
    """
    best, best_orders = np.zeros(0), np.zeros(0, np.int64)
    for peak in peaks:
        for order in range(max(1, math.ceil(peak / (nominal + HUM_TOLERANCE_HZ))), math.floor(peak / (nominal - HUM_TOLERANCE_HZ)) + 1):
            ratio = peaks / (peak / order)
            orders = np.round(ratio)
            near = (orders >= 1) & (orders <= HUM_MAX_ORDER) & (np.abs(ratio - orders) < HARMONIC_TOLERANCE * ratio)
            members, unique = peaks[near], np.unique(orders[near])
            if unique.size > best_orders.size and members.size == unique.size:
                best, best_orders = members, unique.astype(np.int64)
    if best_orders.size < MIN_HARMONICS:
        return math.nan, np.zeros(0, np.int64)
    return float(np.dot(best_orders, best) / np.dot(best_orders, best_orders)), best_orders


def hum_in_segments(clips: Iterable[np.ndarray], sample_rate: int) -> np.ndarray:
    """Frequencies of the mains hum persisting through ``clips`` (stretches spread through one stream), or none.

    The clips' average spectrum (:func:`clip_spectrum`: a few seconds per
    FFT, so a steady tone stands in one narrow line while speech and music
    spread) is searched for a series of harmonics of 50 or 60 Hz standing
    :data:`HUM_PROMINENCE_DB` above their surroundings (:func:`mains_series`).
    A harmonic is kept if it stands :data:`HUM_CLIP_PROMINENCE_DB` above its
    surroundings near its frequency in at least :data:`HUM_PRESENCE` of the
    clips; it is hum if :data:`MIN_HARMONICS` or more of the first
    :data:`HUM_LOW_ORDERS` are kept, their orders have no common factor
    (harmonics 5, 10 and 15 of 46.7 Hz are a note of 233 Hz; harmonics 5,
    10, 15 of 60 Hz are one of 300 Hz) and the fundamental the clips show wanders less than
    :data:`HUM_MAX_SPREAD_HZ`.
    Speech harmonics glide and music's notes change, so they seldom stand on
    the grid's harmonics in most clips; hum does in all of them.

    Parameters
    ----------
    clips : iterable of np.ndarray [shape=(n, channels)]
        Equally long stretches, at least :data:`HUM_MIN_SEGMENTS` of them;
        taken one at a time (only their spectra below 1.5 kHz are kept).
    sample_rate : int
        Hz.

    Returns
    -------
    np.ndarray [shape=(tones,), dtype=float64]
        Hz, ascending: the harmonics at the first clip's fundamental (the
        average's if it shows none), so that a fit on the first clip has the
        phase right.
    """
    top = min(HUM_MAX_ORDER * (max(MAINS_HZ) + HUM_TOLERANCE_HZ), 0.45 * sample_rate)
    levels = []
    scratch: SpectrumScratch | None = None
    for clip in clips:
        scratch = SpectrumScratch(*clip.shape) if scratch is None else scratch  # the clips are equally long
        kept = int(top / (sample_rate / padded_length(clip.shape[0]))) + 2
        level, hz_per_bin, per_bin = clip_spectrum(clip, sample_rate, bins=kept, scratch=scratch)
        levels.append(level)
    if len(levels) < HUM_MIN_SEGMENTS:
        return np.zeros(0)
    each = np.array(levels)
    del levels
    power = np.zeros(each.shape[1])
    for level in each:  # the clips' mean power a row at a time: no temporaries the size of all the clips
        power += 10 ** (level / 10)
    average = 10 * np.log10(power / each.shape[0])
    peaks = level_peaks(average, hz_per_bin, per_bin, prominence_db=HUM_PROMINENCE_DB, highest=4 * MAX_TONES, top_hz=top)
    standing = np.array([prominence(level, per_bin) for level in each])
    best = np.zeros(0)
    for nominal in MAINS_HZ:
        fundamental, orders = mains_series(peaks, nominal)
        if not orders.size:
            continue
        present, local = _harmonics_in_clips(each, standing, orders * fundamental, hz_per_bin)
        keep = present.mean(axis=0) >= HUM_PRESENCE
        if keep.sum() < MIN_HARMONICS:
            continue
        with np.errstate(invalid="ignore"):
            shown = np.nanmedian(np.where(present[:, keep], local[:, keep] / orders[keep], np.nan), axis=1)
        low = orders[keep & (orders <= HUM_LOW_ORDERS)]
        if low.size < MIN_HARMONICS or np.gcd.reduce(low) > 1 or np.ptp(shown[np.isfinite(shown)]) > HUM_MAX_SPREAD_HZ:
            continue  # a series of a multiple of the grid frequency (a note), or a sound whose harmonics meet the grid's high up
        start = shown[0] if np.isfinite(shown[0]) else fundamental
        if abs(start - nominal) <= HUM_TOLERANCE_HZ and keep.sum() > best.size:
            best = orders[keep] * start
    return best


def _harmonics_in_clips(
    levels: np.ndarray, standing: np.ndarray, frequencies: np.ndarray, hz_per_bin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each clip shows each harmonic (its highest bin within 0.3 % stands out enough), and that bin's frequency; ``(clips, harmonics)`` each."""
    present = np.zeros((levels.shape[0], frequencies.size), bool)
    local = np.zeros(present.shape)
    for j, centre in enumerate(frequencies):
        width = max(HARMONIC_TOLERANCE * centre, hz_per_bin)
        low, high = round((centre - width) / hz_per_bin), min(round((centre + width) / hz_per_bin) + 1, levels.shape[1] - 1)
        highest = low + np.argmax(levels[:, low:high], axis=1)
        rows = np.arange(levels.shape[0])
        present[:, j] = standing[rows, highest] >= HUM_CLIP_PROMINENCE_DB
        local[:, j] = refined_bins(levels, highest, rows) * hz_per_bin
    return present, local


class ToneStage:
    """Hold the first seconds of a noise clip, find its steady tones, pass the clip on without them.

    With tones ``known`` beforehand (an ``auto`` profile's hum), nothing is
    held: the clip is passed on without them from its first sample.
    """

    def __init__(self, sample_rate: int, first: int, *, reference: bool, known: Tones | None = None):
        self.sample_rate = sample_rate
        self.first = first
        self.reference = reference
        self.held: list[np.ndarray] | None = []
        self.held_samples = 0
        self.frequencies = np.zeros(0)
        self.reference_amplitudes: np.ndarray | None = None
        self.canceller: ToneCanceller | None = None
        if known is not None:
            self.held = None
            self.frequencies, self.reference_amplitudes = known
            if self.frequencies.size:
                self.canceller = ToneCanceller(self.frequencies, self.reference_amplitudes, sample_rate)

    def push(self, clip: np.ndarray) -> list[np.ndarray]:
        if not clip.shape[0]:
            return []
        if self.held is None:
            return [self._without_tones(clip)]
        self.held.append(clip)
        self.held_samples += clip.shape[0]
        if self.held_samples < TONE_ANALYSIS_SECONDS * self.sample_rate:
            return []
        return self.finish()

    def finish(self) -> list[np.ndarray]:
        if self.held is None:
            return []
        held, self.held = self.held, None
        if not held:
            return []
        noise = np.concatenate(held)
        self.frequencies = find_tones(noise, self.sample_rate)
        amplitudes = fit_tones(noise, self.sample_rate, self.frequencies, start=self.first)
        self.reference_amplitudes = amplitudes if self.reference else np.zeros_like(amplitudes)
        if self.frequencies.size:
            self.canceller = ToneCanceller(self.frequencies, amplitudes, self.sample_rate)
            self.canceller.position = self.first
        return [self._without_tones(noise)]

    def _without_tones(self, clip: np.ndarray) -> np.ndarray:
        return clip if self.canceller is None else self.canceller.process(clip)[0]


def find_hum(read: Callable[[int, int], np.ndarray], frames: int, sample_rate: int) -> Tones | None:
    """The mains hum persisting through a recording with no noise-only stretch, for an ``auto`` profile; None if there is none.

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` gives samples ``[start, stop)`` of the recording,
        shape ``(stop - start, channels)``. Called for up to 32 stretches of
        2 s spread through it (:func:`hum_segments`), one
        at a time, and once more for the first.
    frames : int
        The recording's length in samples.
    sample_rate : int
        Hz.

    Returns
    -------
    (frequencies, amplitudes) or None
        The hum's harmonics (:func:`hum_in_segments`) and
        their amplitudes fitted on the first stretch, referred to sample 0.
    """
    segments = hum_segments(frames, sample_rate)
    frequencies = hum_in_segments((np.asarray(read(start, stop), np.float32) for start, stop in segments), sample_rate)
    if not frequencies.size:
        return None
    start, stop = segments[0]
    return frequencies, fit_tones(np.asarray(read(start, stop), np.float32), sample_rate, frequencies, start=start)
