"""The numpy formulation of the DSP core's frame loops, as it stood before they were compiled: the test oracle.

``NoiseTracker``, ``GainComputer``, ``one_pole``, ``FrameSplitter`` and
``OverlapAdder`` are main's numpy code of 87a6ea1 (31cee55's, with the
bounded tracking of measured profiles and the longer ``auto`` window);
:func:`denoise` runs a whole signal through them as :func:`destatic.denoise`
does with a classic method (the profile and the tone canceller are the
package's, unchanged). The compiled loops (:mod:`destatic.dsp._kernels`)
must agree with these.

A change to the tracker or the gain rule is made in both places: here and
in ``src/destatic/dsp/_kernels.py``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from destatic.dsp import noise as noise_module
from destatic.dsp._audio import as_audio
from destatic.dsp.framing import BLOCK_SIZE, tone_canceller
from destatic.dsp.gains import PRIOR_SNR_FLOOR_DB, TONE_BINS, _half_exp1_table, _triangle_kernel
from destatic.dsp.methods import build_options, resolve_method
from destatic.dsp.options import SuppressionOptions
from destatic.dsp.noise import (
    MIN_WINDOW_SECONDS,
    NOISE_UPDATE_SECONDS,
    PRESENCE_RATIO,
    SMOOTHING_SECONDS,
    min_window_frames,
    minimum_bias,
    smooth_bins,
    smoothing_factor,
)
from destatic.dsp.profile import NoiseProfile
from destatic.dsp.stft import FrameCounter, _lead, hann_window
from destatic.errors import ParameterError

FLOAT32_MANTISSA_BITS = 23
LOGMMSE_CELLS_PER_OCTAVE_BITS = 10

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


def _logmmse_factor(v: np.ndarray) -> np.ndarray:
    """exp(E1(v) / 2) by table lookup: within 0.05 % (0.005 dB) for v in [6e-8, 256].

    ``v`` is float32 and non-negative; smaller values get the first cell's
    value, larger ones the last's (where the factor is 1 within 0.1 %).
    """
    table, first = _half_exp1_table()
    index = np.ascontiguousarray(v, np.float32).view(np.int32) >> (
        FLOAT32_MANTISSA_BITS - LOGMMSE_CELLS_PER_OCTAVE_BITS
    )
    index -= first
    return table.take(index, mode="clip")


def _smooth_across_bins(gain: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve the last axis with a symmetric ``kernel``, the edge bins repeated outwards."""
    half = kernel.size // 2
    padded = np.concatenate(
        [np.repeat(gain[..., :1], half, axis=-1), gain, np.repeat(gain[..., -1:], half, axis=-1)], axis=-1
    )
    bins = gain.shape[-1]
    smoothed = kernel[0] * padded[..., :bins]
    for offset in range(1, kernel.size):
        smoothed += kernel[offset] * padded[..., offset : offset + bins]
    return smoothed


class GainComputer:
    """The stateful gain rule of one stream: call it on successive spectra.

    Parameters
    ----------
    profile : NoiseProfile
        Noise estimate, already with the stream's channel count.
    method : str
        One of :data:`METHODS`.
    options : SuppressionOptions

    Notes
    -----
    Calling it on ``(channels, frames, bins)`` complex spectra returns float32
    gains of that shape; the result does not depend on how frames are grouped.
    """

    def __init__(self, profile: NoiseProfile, method: str, options: SuppressionOptions):
        self.profile = profile
        self.method = method
        self.options = options
        self.floor = float(10 ** (-options.max_reduction_db / 20))
        self.scale = float(10 ** (options.sensitivity_db / 10))
        track = options.track_noise
        self.tracker = (
            NoiseTracker(
                profile.power,
                sample_rate=profile.sample_rate,
                n_fft=profile.n_fft,
                hop_length=profile.hop_length,
                update_seconds=(
                    noise_module.NOISE_UPDATE_SECONDS
                    if profile.mode == "auto"
                    else noise_module.PROFILED_NOISE_UPDATE_SECONDS
                ),
                window_seconds=options.auto_window_s if profile.mode == "auto" else noise_module.MIN_WINDOW_SECONDS,
            )
            if track and method != "seed"
            else None
        )
        self._ceiling = self._noise_ceiling(profile, options)
        self._prior = np.zeros(profile.power.shape, np.float32)
        self._kernel = _triangle_kernel(
            options.freq_smoothing_hz * profile.n_fft / profile.sample_rate
        )
        self._time_smoothing = (
            smoothing_factor(
                options.time_smoothing_ms / 1000, profile.sample_rate, profile.hop_length
            )
            if options.time_smoothing_ms > 0
            else 0.0
        )
        self._time_smoothing_state: np.ndarray | None = None

    @staticmethod
    def _noise_ceiling(profile: NoiseProfile, options: SuppressionOptions) -> np.ndarray | None:
        """The most the tracked noise may be above a measured profile (before drift), per channel and bin; None: no bound.

        Bins of steady tones from a separate recording stay free: those have no
        phase yet, the canceller needs seconds to lock on, and until then what
        it leaves in their bins is known noise the tracker must follow.
        """
        if profile.mode == "auto" or options.profiled_ceiling_db is None:
            return None
        ceiling = (profile.power * np.float32(10 ** (options.profiled_ceiling_db / 10)))[:, np.newaxis, :]
        if profile.tones.size and not profile.tone_amplitudes.any():
            centre = np.rint(np.asarray(profile.tones) * profile.n_fft / profile.sample_rate).astype(int)
            near = (centre[:, np.newaxis] + np.arange(-TONE_BINS, TONE_BINS + 1)).ravel()
            ceiling = ceiling.copy()
            ceiling[..., near[(near >= 0) & (near < profile.bins)]] = np.inf
        return ceiling

    def _bounded(self, noise: np.ndarray) -> np.ndarray:
        """The tracked noise kept under the ceiling, which rises with the frame's broadband drift."""
        ceiling = self._ceiling
        if self.options.drift_quantile is not None:
            reference = np.maximum(self.profile.power[:, np.newaxis, :], np.float32(1e-30))
            drift = np.quantile(noise / reference, self.options.drift_quantile, axis=-1, keepdims=True)
            ceiling = ceiling * np.maximum(drift, np.float32(1)).astype(np.float32)
        return np.minimum(noise, ceiling, out=noise)

    def push_samples(self, block: np.ndarray) -> None:
        """The samples behind the next spectra (:class:`GainRule`); this rule needs the spectra only."""

    def finish(self) -> np.ndarray:
        """The gains still owed at the end (:class:`GainRule`): none, this rule answers every frame at once."""
        return np.zeros((self.profile.channels, 0, self.profile.bins), np.float32)

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        if spectra.shape[1] == 0:
            return np.zeros(spectra.shape, np.float32)
        if self.method == "seed":
            return self._seed(spectra)
        power = spectra.real * spectra.real
        power += spectra.imag * spectra.imag
        if self.tracker is not None:
            noise = self.tracker.update(power)
            if self._ceiling is not None:
                noise = self._bounded(noise)
        else:
            noise = np.broadcast_to(self.profile.power[:, np.newaxis, :], power.shape)
        noise = np.maximum(noise * self.scale, np.float32(1e-30))
        gamma = np.clip(power / noise, np.float32(1e-10), np.float32(1e6))
        if self.method == "subtract":
            gain = self._subtract(gamma, power, noise)
        else:
            gain = self._decision_directed(gamma)
        return self._finish(gain)

    def _seed(self, spectra: np.ndarray) -> np.ndarray:
        magnitude = np.abs(spectra)
        safe = np.where(magnitude > 0, magnitude, 1.0)
        gain = 1.0 - self.profile.magnitude[:, np.newaxis, :] / safe
        return np.where(magnitude > 0, gain, 0.0).astype(np.float32)

    def _subtract(self, gamma: np.ndarray, power: np.ndarray, noise: np.ndarray) -> np.ndarray:
        alpha = self.options.over_subtraction
        if alpha is None:
            snr_db = 10 * np.log10(
                np.maximum(power.sum(axis=-1, keepdims=True), 1e-30)
                / noise.sum(axis=-1, keepdims=True)
            )
            alpha = np.clip(4 - 0.15 * snr_db, 1.0, 5.0).astype(np.float32)
        beta = self.options.spectral_floor
        ratio = np.maximum(1 - alpha / gamma, beta / gamma)
        return np.sqrt(ratio)

    def _decision_directed(self, gamma: np.ndarray) -> np.ndarray:
        """Wiener gain from the decision-directed prior SNR, frame by frame; log-MMSE from it.

        ``xi = a G_prev^2 gamma_prev + max((1 - a)(gamma - 1), xi_min)``: the
        floor applies to the fresh term, so the loop needs five operations.
        """
        a = np.float32(self.options.smoothing)
        xi_min = np.float32(10 ** (PRIOR_SNR_FLOOR_DB / 10))
        fresh = np.maximum(gamma - 1, 0)
        fresh *= 1 - a
        np.maximum(fresh, xi_min, out=fresh)
        fresh_plus_one = fresh + 1
        weighted_gamma = gamma * a
        wiener = np.empty_like(gamma)
        prior = self._prior
        xi = np.empty_like(prior)
        for frame in range(gamma.shape[1]):
            current = wiener[:, frame]
            np.add(prior, fresh[:, frame], out=xi)
            prior += fresh_plus_one[:, frame]
            np.divide(xi, prior, out=current)
            np.multiply(current, weighted_gamma[:, frame], out=prior)
            prior *= current
        self._prior = prior
        if self.method == "wiener":
            return wiener
        v = wiener * gamma
        gain = np.minimum(wiener * _logmmse_factor(v), 1)
        if self.options.speech_absence > 0:
            gain = self._weigh_by_presence(gain, wiener, v)
        return gain

    def _weigh_by_presence(self, gain: np.ndarray, wiener: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``G^p * G_min^(1 - p)`` with ``p`` the probability that speech is present (OM-LSA, Cohen 2001).

        ``p = 1 / (1 + q / (1 - q) * (1 + xi) * exp(-v))`` for a priori
        absence ``q``; where speech is unlikely the gain falls towards the
        floor, which takes out the residual noise that the log-MMSE gain leaves.
        """
        q = self.options.speech_absence
        odds = np.subtract(np.float32(np.log(q / (1 - q))), v)
        np.maximum(odds, np.float32(-80), out=odds)
        np.exp(odds, out=odds)
        odds /= 1 - wiener
        odds += 1
        log_floor = np.float32(np.log(self.floor))
        log_gain = np.maximum(gain, np.float32(self.floor), out=gain)
        np.log(log_gain, out=log_gain)
        log_gain -= log_floor
        log_gain /= odds
        log_gain += log_floor
        return np.exp(log_gain, out=log_gain)

    def _finish(self, gain: np.ndarray) -> np.ndarray:
        np.clip(gain, self.floor, 1.0, out=gain)
        if self._kernel is not None:
            gain = _smooth_across_bins(gain, self._kernel)
        if self._time_smoothing:
            if self._time_smoothing_state is None:
                self._time_smoothing_state = gain[:, 0, :].astype(np.float64)
            gain, self._time_smoothing_state = one_pole(
                gain.astype(np.float64), self._time_smoothing, self._time_smoothing_state, axis=1
            )
        return gain.astype(np.float32, copy=False)


class FrameSplitter:
    """Cut a stream of sample blocks into Hann-windowed spectra.

    Parameters
    ----------
    channels : int
        Channel count of every block.
    n_fft, hop_length : int
        FFT size and hop, in samples.
    centered : bool
        Framing: ``False`` aligned (default), ``True`` librosa-centred.

    Notes
    -----
    :meth:`push` takes blocks of shape ``(n, channels)`` and returns the spectra
    of the frames it completes, shape ``(channels, frames, n_fft // 2 + 1)``
    complex64; :meth:`finish` zero-pads the end and returns the rest, so the
    total is :func:`frame_count` of the samples pushed.

    With ``padded=False`` only frames lying wholly inside the stream are made
    (one zero-padded frame if the stream is shorter than ``n_fft``): for noise
    profiles, where padding would bias the estimate low.
    """

    def __init__(
        self,
        channels: int,
        *,
        n_fft: int,
        hop_length: int,
        centered: bool = False,
        padded: bool = True,
    ):
        self.channels = channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self._counter = FrameCounter(
            n_fft=n_fft, hop_length=hop_length, centered=centered, padded=padded
        )
        self._window = hann_window(n_fft)
        self._pending = np.zeros((channels, self._counter.pending), np.float32)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_samples(self) -> int:
        """Samples pushed so far."""
        return self._counter.n_samples

    @property
    def frames_done(self) -> int:
        """Frames returned so far."""
        return self._counter.frames_done

    def _spectra(self, n_frames: int) -> np.ndarray:
        if n_frames <= 0:
            return np.zeros((self.channels, 0, self.bins), np.complex64)
        frames = np.lib.stride_tricks.sliding_window_view(self._pending, self.n_fft, axis=1)
        frames = frames[:, : (n_frames - 1) * self.hop_length + 1 : self.hop_length]
        spectra = scipy.fft.rfft(frames * self._window, axis=-1)
        self._pending = self._pending[:, n_frames * self.hop_length :].copy()
        return spectra.astype(np.complex64, copy=False)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add a ``(n, channels)`` float32 block; return the spectra it completes."""
        if block.shape[0] == 0:
            return self._spectra(0)
        self._pending = np.concatenate([self._pending, block.T], axis=1)
        return self._spectra(self._counter.push(block.shape[0]))

    def finish(self) -> np.ndarray:
        """Zero-pad the end of the stream and return the remaining spectra."""
        remaining = self._counter.finish()
        if remaining <= 0:
            return self._spectra(0)
        needed = (remaining - 1) * self.hop_length + self.n_fft
        shortfall = needed - self._pending.shape[1]
        if shortfall > 0:
            self._pending = np.pad(self._pending, ((0, 0), (0, shortfall)))
        return self._spectra(remaining)


class OverlapAdder:
    """Turn a stream of spectra back into samples (inverse of :class:`FrameSplitter`).

    :meth:`push` takes spectra ``(channels, frames, bins)`` and returns the
    samples they complete, ``(n, channels)`` float32, with the framing's lead
    trimmed so output sample ``i`` lines up with input sample ``i``. Set
    :attr:`limit` to the input length before the last push; :meth:`finish`
    returns whatever is still owed up to it.
    """

    def __init__(self, channels: int, *, n_fft: int, hop_length: int, centered: bool = False):
        self.channels = channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.limit: int | None = None
        self.emitted = 0
        self._lead = _lead(n_fft, hop_length, centered)
        self._to_skip = self._lead
        self._window = hann_window(n_fft)
        tail = n_fft - hop_length
        self._tail = np.zeros((channels, tail), np.float32)
        self._tail_weight = np.zeros(tail, np.float32)
        self._ratio = n_fft // hop_length

    def _emit(self, samples: np.ndarray, weight: np.ndarray) -> np.ndarray:
        samples *= np.where(weight > np.finfo(np.float32).tiny, 1 / np.maximum(weight, 1e-30), 1)
        if self._to_skip:
            skip = min(self._to_skip, samples.shape[1])
            samples = samples[:, skip:]
            self._to_skip -= skip
        if self.limit is not None:
            samples = samples[:, : max(self.limit - self.emitted, 0)]
        self.emitted += samples.shape[1]
        return np.ascontiguousarray(samples.T)

    def push(self, spectra: np.ndarray) -> np.ndarray:
        """Overlap-add ``spectra``; return the completed samples ``(n, channels)``."""
        n_frames = spectra.shape[1]
        if n_frames == 0:
            return np.zeros((0, self.channels), np.float32)
        hop = self.hop_length
        frames = scipy.fft.irfft(spectra, n=self.n_fft, axis=-1).astype(np.float32, copy=False)
        frames *= self._window
        length = (n_frames - 1) * hop + self.n_fft
        total = np.zeros((self.channels, length), np.float32)
        weight = np.zeros(length, np.float32)
        tail = self._tail.shape[1]
        total[:, :tail] += self._tail
        weight[:tail] += self._tail_weight
        squared = self._window**2
        parts = frames.reshape(self.channels, n_frames, self._ratio, hop)
        for part in range(self._ratio):
            start = part * hop
            total[:, start : start + n_frames * hop] += parts[:, :, part, :].reshape(
                self.channels, n_frames * hop
            )
            weight[start : start + n_frames * hop] += np.tile(
                squared[start : start + hop], n_frames
            )
        done = n_frames * hop
        self._tail = total[:, done:].copy()
        self._tail_weight = weight[done:].copy()
        return self._emit(total[:, :done], weight[:done])

    def finish(self) -> np.ndarray:
        """Return the samples still owed up to :attr:`limit` (zeros past the last frame)."""
        if self.limit is None:
            raise ParameterError("OverlapAdder.finish needs limit set to the input length")
        samples = self._emit(self._tail.copy(), self._tail_weight.copy())
        owed = self.limit - self.emitted
        if owed > 0:
            samples = np.concatenate([samples, np.zeros((owed, self.channels), np.float32)])
            self.emitted += owed
        return samples


def denoise(audio: np.ndarray, sample_rate: int, profile: NoiseProfile, *, method: str | None = None,
            residue: bool = False, block_size: int = BLOCK_SIZE, **options) -> np.ndarray:
    """``destatic.denoise(audio, sample_rate, noise=profile, ...)`` through the numpy classes above, in one process."""
    method = resolve_method(method)
    settings = build_options(method, options)
    samples = as_audio(audio)
    channels = samples.shape[1]
    profile = profile.for_channels(channels)
    framing = {"n_fft": profile.n_fft, "hop_length": profile.hop_length, "centered": profile.centered}
    framer = FrameSplitter(channels, **framing)
    overlap = OverlapAdder(channels, **framing)
    rule = GainComputer(profile, method, settings)
    canceller = tone_canceller(profile)
    outputs, removed = [], []

    def apply(spectra):
        gains = rule(spectra).astype(np.float32, copy=False)
        return spectra * ((1 - gains) if residue else gains)

    for start in range(0, samples.shape[0], block_size):
        block = samples[start : start + block_size]
        if canceller is not None:
            block, tones = canceller.process(block)
            removed.append(tones)
        spectra = framer.push(block)
        if spectra.shape[1]:
            outputs.append(overlap.push(apply(spectra)))
    spectra = framer.finish()
    overlap.limit = framer.n_samples
    outputs.append(overlap.push(apply(spectra)))
    outputs.append(overlap.finish())
    result = np.concatenate(outputs)
    if residue and removed:
        result = result + np.concatenate(removed)
    return result


def hybrid_mix(
    classic: np.ndarray,
    learned_ready: np.ndarray,
    magnitude: np.ndarray,
    learned: np.ndarray,
    first: int,
    noise: np.ndarray,
    drift: np.ndarray,
    voice: np.ndarray,
    region: np.ndarray,
    lowered: np.ndarray,
    voice_mix: float,
    tone_width: int,
    lowering_floor: float,
) -> np.ndarray:
    """The hybrid's mixing rule in numpy, as ``LearnedGainComputer._mixed`` computed it at 8316633, then (issue 30's
    eighth attempt) lowered to DFN3's gain in the voice region where DFN3 removes no more than the noise, no lower
    than ``lowering_floor`` (ninth attempt: the classic gain's floor, where DFN3's gain may go deeper), the noise
    raised by each frame's ``drift`` (rows, ready) float64.

    ``classic`` (channels, ready, bins); ``learned_ready`` the learned gains of those frames (rows, ready,
    bins); ``magnitude`` and ``learned`` every kept frame's (rows, kept, bins), the first ready one at
    ``first``; ``noise`` (rows, bins) float64; ``voice``, ``region`` (rows, ready) float32; ``lowered`` (bins) bool.
    """
    from destatic.dsp.learned import (  # noqa: PLC0415
        NOISE_REMOVED_OVER_DB,
        NOISE_REMOVED_SPAN_DB,
        NOISY_GAIN_SPAN,
        STEADY_FRAMES,
        STEADY_OVER_DB,
        STEADY_SPAN_DB,
        TONE_FRAMES,
        TONE_OVER_DB,
        TONE_SPAN_DB,
    )
    from scipy.ndimage import median_filter  # noqa: PLC0415

    ready = classic.shape[1]

    def around(values: np.ndarray, frames: int) -> np.ndarray:
        half = frames // 2
        start, stop = first - half, first + ready + half
        part = values[:, max(start, 0) : stop]
        return np.pad(part, ((0, 0), (max(-start, 0), max(stop - values.shape[1], 0)), (0, 0)), mode="edge")

    def centred_mean(values: np.ndarray, frames: int) -> np.ndarray:
        return np.lib.stride_tricks.sliding_window_view(values, frames, axis=1).mean(axis=-1)

    power = centred_mean(around(magnitude, STEADY_FRAMES) ** 2, STEADY_FRAMES)
    over_db = 10 * np.log10(power / np.maximum(noise[:, np.newaxis, :], 1e-30) + 1e-12)
    steady = np.clip(1 - (over_db - STEADY_OVER_DB) / STEADY_SPAN_DB, 0, 1)

    removed = centred_mean((around(magnitude, TONE_FRAMES) * (1 - around(learned, TONE_FRAMES))) ** 2, TONE_FRAMES)
    side = tone_width // 2
    padded = np.pad(removed, ((0, 0), (0, 0), (side, side)), mode="edge")
    band = median_filter(padded.reshape(-1), size=tone_width, mode="nearest").reshape(padded.shape)[..., side:-side]
    ground = np.maximum(band, noise[:, np.newaxis, :])
    over_db = 10 * np.log10((removed + 1e-30) / (ground + 1e-30))
    tone = np.clip((over_db - TONE_OVER_DB) / TONE_SPAN_DB, 0, 1)

    log_classic = np.log(classic)
    noisy_bins = np.clip((1 - classic) / NOISY_GAIN_SPAN, 0, 1)
    weight = np.maximum(voice[..., np.newaxis] * noisy_bins, region[..., np.newaxis] * steady)
    weight = np.float32(voice_mix) * weight * (1 - tone)
    log_learned = np.log(learned_ready)
    mixed = log_classic + weight * (log_learned - log_classic)

    noise_removed = centred_mean(around(magnitude, STEADY_FRAMES) ** 2 * (1 - around(learned, STEADY_FRAMES) ** 2), STEADY_FRAMES)
    grown = noise[:, np.newaxis, :] * drift[..., np.newaxis]
    ratio = np.maximum(noise_removed.astype(np.float64), 1e-30) / np.maximum(grown, 1e-30)
    over_db = 10 * np.log10(ratio)
    noise_only = 1 - np.clip((over_db - NOISE_REMOVED_OVER_DB) / NOISE_REMOVED_SPAN_DB, 0, 1)
    target = np.maximum(log_learned, np.log(np.float32(lowering_floor)))
    down = lowered & (target < mixed)
    lowered_mix = mixed + region.astype(np.float64)[..., np.newaxis] * noise_only * (target - mixed)
    return np.exp(np.where(down, lowered_mix, mixed)).astype(np.float32)
