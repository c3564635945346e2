"""Suppression rules: from noisy spectra and a noise estimate to a real gain per bin.

``seed``
    The tutorial: ``|Y| - E|N|`` with the original phase and no
    rectification, i.e. the gain ``1 - E|N| / |Y|`` (negative where the noise
    estimate exceeds the bin, which flips its phase).
``subtract``
    Berouti power subtraction: ``|S|^2 = |Y|^2 - alpha lambda_N`` floored at
    ``beta lambda_N``, ``alpha`` falling with the frame's SNR.
``wiener``
    ``xi / (1 + xi)`` with the decision-directed prior SNR ``xi``.
``logmmse``
    Ephraim-Malah log-spectral amplitude estimator with the same ``xi``.

Every rule but ``seed`` is then limited to ``max_reduction_db`` and may be
smoothed over frequency and time against musical noise. The noise estimate
starts from the profile and is tracked through the stream (MCRA); with a
measured profile it follows only the measured noise's slow drift, so that
sustained music or ambience is not taken for noise. Steady tones (hum) are
not handled here: the engine subtracts them coherently before the spectra
are taken (:mod:`destatic.dsp.tones`), and the profile measures the noise
without them. The learned methods (``deepfilter``, ``hybrid``) are in
:mod:`destatic.dsp.learned`; :func:`rule_for` makes any method's rule.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import scipy.special

from destatic.dsp._audio import check_number
from destatic.dsp.choices import LEARNED_METHODS, METHODS, Method, refuse_options_for_seed, resolve_method
from destatic.dsp import noise as noise_module
from destatic.dsp.noise import NoiseTracker, one_pole, smoothing_factor
from destatic.dsp.profile import NoiseProfile
from destatic.errors import ParameterError

__all__ = ["METHODS", "GainComputer", "GainRule", "Method", "SuppressionOptions", "resolve_method", "rule_for"]
PRIOR_SNR_FLOOR_DB = -25.0
TONE_BINS = 2
"""Bins either side of a profile tone's bin (a Hann window's main lobe) that the noise ceiling leaves free."""


@dataclass(frozen=True)
class SuppressionOptions:
    """Controls shared by the ``subtract``, ``wiener`` and ``logmmse`` methods.

    Parameters
    ----------
    max_reduction_db : float > 0
        Largest attenuation of any bin in dB (the gain floor); lower keeps more
        of the noise but sounds more natural.
    sensitivity_db : float
        Raises (positive) or lowers (negative) the noise estimate by this many
        dB before suppression: more or less aggressive.
    smoothing : float in [0, 1)
        Weight of the previous frame in the decision-directed prior SNR
        (``wiener``, ``logmmse``); higher is smoother with less musical noise.
    freq_smoothing_hz : float >= 0
        Width of a triangular smoothing of the gain across frequency; 0 is off.
    time_smoothing_ms : float >= 0
        Time constant of a one-pole smoothing of the gain over time; 0 is
        off. Calms musical noise at the cost of softer speech onsets.
    over_subtraction : float >= 1 or None
        ``subtract`` only: the factor ``alpha``; ``None`` derives it per frame
        from the SNR (Berouti: ``4 - 0.15 SNR_dB``, within 1..5).
    spectral_floor : float in (0, 1]
        ``subtract`` only: ``beta``, the residual noise power kept.
    track_noise : bool
        Keep following the noise while denoising (MCRA), starting from the
        profile: quickly for ``auto`` profiles, slowly (1 s) for measured ones.
    speech_absence : float in [0, 0.95]
        ``logmmse`` only: a priori probability that a bin holds no speech;
        the gain is weighted by the estimated probability of speech
        (OM-LSA). 0 turns the weighting off.
    profiled_ceiling_db : float >= 0 or None
        With a measured profile (not ``auto``), the tracked noise may rise at
        most this many dB above the profile times its broadband drift (see
        ``drift_quantile``): the tracker follows what was measured, not a
        sustained note or ambience it would otherwise climb onto. None:
        unbounded (what destatic did before; it damages sustained music).
    drift_quantile : float in (0, 1) or None
        The broadband drift of a frame: this quantile over bins of tracked
        to measured power (0.1: a level change most bins share, never a few
        bins of music). None: the ceiling does not move.
    auto_window_s : float
        ``auto`` profiles: the tracker's minimum-statistics window. 8 s:
        the classic 1.5 s climbs onto any note held longer than that.
    voice_mix : float in [0, 1]
        ``hybrid`` only: in frames where DeepFilterNet3 hears a voice, how
        far (in dB) the noisy bins move from the classic gain towards its gain.
    learned_stereo : {'mid', 'each'}
        ``hybrid`` only: on stereo, one DeepFilterNet3 pass on the channels'
        mean drives both (half the cost; -0.044 PESQ on the shared media), or
        one pass per channel. Other channel counts always get one each.
    """

    max_reduction_db: float = 30.0
    sensitivity_db: float = 0.0
    smoothing: float = 0.94
    freq_smoothing_hz: float = 0.0
    time_smoothing_ms: float = 0.0
    over_subtraction: float | None = None
    spectral_floor: float = 0.01
    track_noise: bool = True
    speech_absence: float = 0.2
    profiled_ceiling_db: float | None = 3.0
    drift_quantile: float | None = 0.1
    auto_window_s: float = 8.0
    voice_mix: float = 0.7
    learned_stereo: str = "mid"

    def __post_init__(self) -> None:
        check_number("max_reduction_db", self.max_reduction_db, low=0.1, high=200.0,
                     allowed="a number of dB from 0.1 to 200")
        check_number("sensitivity_db", self.sensitivity_db, low=-40.0, high=40.0,
                     allowed="a number of dB from -40 to 40")
        check_number("smoothing", self.smoothing, low=0.0, high=0.999,
                     allowed="a number from 0 to 0.999")
        check_number("freq_smoothing_hz", self.freq_smoothing_hz, low=0.0, high=20_000.0,
                     allowed="a number of Hz from 0 to 20000")
        check_number("time_smoothing_ms", self.time_smoothing_ms, low=0.0, high=10_000.0,
                     allowed="a number of milliseconds from 0 to 10000")
        if self.over_subtraction is not None:
            check_number("over_subtraction", self.over_subtraction, low=1.0, high=20.0,
                         allowed="None or a number from 1 to 20")
        check_number("spectral_floor", self.spectral_floor, low=1e-6, high=1.0,
                     allowed="a number in (0, 1]")
        check_number("speech_absence", self.speech_absence, low=0.0, high=0.95,
                     allowed="a probability from 0 to 0.95")
        if self.track_noise not in (True, False):
            raise ParameterError(f"track_noise={self.track_noise!r} must be True or False")
        if self.profiled_ceiling_db is not None:
            check_number("profiled_ceiling_db", self.profiled_ceiling_db, low=0.0, high=60.0,
                         allowed="None or a number of dB from 0 to 60")
        if self.drift_quantile is not None:
            check_number("drift_quantile", self.drift_quantile, low=0.001, high=0.999,
                         allowed="None or a quantile in (0, 1)")
        check_number("auto_window_s", self.auto_window_s, low=0.2, high=60.0, allowed="a number of seconds from 0.2 to 60")
        check_number("voice_mix", self.voice_mix, low=0.0, high=1.0, allowed="a number from 0 to 1")
        if self.learned_stereo not in ("mid", "each"):
            raise ParameterError(f"learned_stereo={self.learned_stereo!r} must be 'mid' or 'each'")

    @classmethod
    def from_options(cls, method: str, options: dict[str, Any]) -> SuppressionOptions:
        """Build from ``**options``, refusing names that do not exist or do not apply."""
        allowed = [item.name for item in fields(cls)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ParameterError(f"unknown option(s) {unknown}; allowed: {allowed}")
        refuse_options_for_seed(method, options)
        return cls(**options)


FLOAT32_MANTISSA_BITS = 23
LOGMMSE_CELLS_PER_OCTAVE_BITS = 10
LOGMMSE_LOWEST_OCTAVE = -24
LOGMMSE_OCTAVES = 32


@functools.lru_cache(maxsize=1)
def _half_exp1_table() -> tuple[np.ndarray, int]:
    """exp(E1(v) / 2) for positive float32 ``v``, indexed by the top bits of ``v``.

    The bits of a positive float32 above its last ``23 - 10`` mantissa bits
    name one of 1024 equal cells per octave; the table holds the value at
    each cell's centre from 2**-24 to 2**8. Returns the table and the index
    of its first cell in that bit pattern.
    """
    shift = FLOAT32_MANTISSA_BITS - LOGMMSE_CELLS_PER_OCTAVE_BITS
    cells = LOGMMSE_OCTAVES << LOGMMSE_CELLS_PER_OCTAVE_BITS
    first = np.array(2.0**LOGMMSE_LOWEST_OCTAVE, np.float32).view(np.int32) >> shift
    patterns = ((first + np.arange(cells, dtype=np.int64)) << shift) + (1 << (shift - 1))
    centres = patterns.astype(np.int32).view(np.float32).astype(np.float64)
    values = np.exp(0.5 * scipy.special.exp1(centres))
    return values.astype(np.float32), int(first)


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


def _triangle_kernel(width_bins: float) -> np.ndarray | None:
    half = int(width_bins // 2)
    if half < 1:
        return None
    kernel = 1.0 - np.abs(np.arange(-half, half + 1)) / (half + 1)
    return (kernel / kernel.sum()).astype(np.float32)


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


class GainRule(Protocol):
    """A stream's gain rule, as the subtract and inverse engines drive it.

    For each block: :meth:`push_samples` with its samples (tones already
    cancelled), then the call with the spectra it completes, which returns
    the gains of the frames the rule can finish (a rule that looks ahead
    returns fewer, or none); at the end :meth:`finish` returns the rest. All
    together: one gain per frame, in order.
    """

    def push_samples(self, block: np.ndarray) -> None: ...

    def __call__(self, spectra: np.ndarray) -> np.ndarray: ...

    def finish(self) -> np.ndarray: ...


def rule_for(profile: NoiseProfile, method: str, options: SuppressionOptions) -> GainRule:
    """The gain rule of one stream for `method` (checked): :class:`GainComputer`, or the learned one."""
    if method in LEARNED_METHODS:
        from destatic.dsp.learned import LearnedGainComputer

        return LearnedGainComputer(profile, method, options)
    return GainComputer(profile, method, options)
