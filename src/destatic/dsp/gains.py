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

from destatic.dsp._audio import check_number
from destatic.dsp.choices import DEFAULT_LEARNED_PROVIDER, LEARNED_METHODS, METHODS, Method, refuse_options_for_seed, resolve_method
from destatic.dsp import noise as noise_module
from destatic.dsp.noise import NoiseTracker, smoothing_factor
from destatic.dsp.profile import NoiseProfile
from destatic.errors import ParameterError

__all__ = ["METHODS", "GainComputer", "GainRule", "Method", "SuppressionOptions", "exp1", "resolve_method", "rule_for"]
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
    learned_provider : str
        ``deepfilter`` and ``hybrid``: the onnxruntime execution provider
        DeepFilterNet3 runs on (``CPUExecutionProvider``; others as the
        installed onnxruntime offers them).
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
    learned_provider: str = DEFAULT_LEARNED_PROVIDER

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
        if not isinstance(self.learned_provider, str) or not self.learned_provider.endswith("ExecutionProvider"):
            raise ParameterError(f"learned_provider={self.learned_provider!r} must name an onnxruntime execution provider")

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


EULER_GAMMA = 0.5772156649015329


def exp1(x: np.ndarray) -> np.ndarray:
    """The exponential integral E1 of positive `x` (float64), as ``scipy.special.exp1`` to about 1e-14.

    The power series up to 1, the continued fraction (Lentz's method) above.
    Written here so that the first call of a process does not import
    scipy.special (a quarter of a second) to build one table.
    """
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    small = x <= 1.0
    near = x[small]
    term, total = np.ones_like(near), np.zeros_like(near)
    for k in range(1, 40):
        term *= -near / k
        total += term / k
    out[small] = -EULER_GAMMA - np.log(near) - total
    far = x[~small]
    b = far + 1.0
    c, d = np.full_like(far, 1e300), 1.0 / b
    fraction = d.copy()
    for i in range(1, 200):
        b += 2.0
        d = 1.0 / (b - i * i * d)
        c = b - i * i / c
        fraction *= c * d
    out[~small] = fraction * np.exp(-far)
    return out


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
    values = np.exp(0.5 * exp1(centres))
    return values.astype(np.float32), int(first)


def _triangle_kernel(width_bins: float) -> np.ndarray | None:
    half = int(width_bins // 2)
    if half < 1:
        return None
    kernel = 1.0 - np.abs(np.arange(-half, half + 1)) / (half + 1)
    return (kernel / kernel.sum()).astype(np.float32)


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
    gains of that shape; the result does not depend on how frames are
    grouped. Every method but ``seed`` runs frame by frame in one compiled
    loop (:func:`destatic.dsp._kernels.suppression_gains`: noise tracking,
    prior SNR, the rule, its limits and smoothing) over state held here.
    """

    def __init__(self, profile: NoiseProfile, method: str, options: SuppressionOptions):
        self.profile = profile
        self.method = method
        self.options = options
        self.floor = float(10 ** (-options.max_reduction_db / 20))
        self.scale = float(10 ** (options.sensitivity_db / 10))
        channels, bins = profile.power.shape
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
        kernel = _triangle_kernel(options.freq_smoothing_hz * profile.n_fft / profile.sample_rate)
        self._kernel = np.zeros(0, np.float32) if kernel is None else kernel
        self._time_smoothing = (
            smoothing_factor(options.time_smoothing_ms / 1000, profile.sample_rate, profile.hop_length)
            if options.time_smoothing_ms > 0
            else 0.0
        )
        self._time_state = np.zeros((channels, bins), np.float64)
        self._time_started = np.zeros(channels, np.bool_)
        if method == "seed":
            return
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        self._kernels = _kernels
        self._method_code = {
            "subtract": _kernels.METHOD_SUBTRACT,
            "wiener": _kernels.METHOD_WIENER,
            "logmmse": _kernels.METHOD_LOGMMSE,
        }[method]
        q = options.speech_absence
        alpha = options.over_subtraction
        tracker_constants = self.tracker.constants if self.tracker is not None else np.zeros(3, np.float32)
        constants = {
            "scale": self.scale,
            "floor": self.floor,
            "log_floor": np.log(self.floor),
            "dd_smoothing": options.smoothing,
            "xi_min": 10 ** (PRIOR_SNR_FLOOR_DB / 10),
            "log_prior_odds": np.log(q / (1 - q)) if q > 0 else 0.0,
            "alpha": -1.0 if alpha is None else alpha,
            "beta": options.spectral_floor,
            "track_smoothing": tracker_constants[0],
            "speech_threshold": tracker_constants[1],
            "noise_keep": tracker_constants[2],
        }
        self._constants = np.array([constants[name] for name in _kernels.CONSTANTS], np.float64).astype(np.float32)
        self._table, self._table_first = _half_exp1_table()
        self._noise_power = np.maximum(np.array(profile.power, np.float32) * np.float32(self.scale), np.float32(1e-30))
        """The untracked noise, scaled by the sensitivity and floored as the rules need it."""
        if self.tracker is None:
            self._tracker_arrays = (
                np.zeros((channels, 4, 0), np.float32),
                np.zeros((channels, 0, 0), np.float32),
                np.zeros(2, np.int64),
                1,
            )
        else:
            tracker = self.tracker
            self._tracker_arrays = (tracker.state, tracker.ring, tracker.counters, tracker.subwindow)
        bounded = self.tracker is not None and self._ceiling is not None
        quantile = options.drift_quantile if options.drift_quantile is not None else 0.0
        position = quantile * (bins - 1)
        self._bound = (
            bounded,
            np.ascontiguousarray(self._ceiling[:, 0, :], np.float32) if bounded else np.zeros((channels, 0), np.float32),
            np.maximum(np.array(profile.power, np.float32), np.float32(1e-30)),
            bounded and options.drift_quantile is not None,
            int(np.floor(position)),
            float(position - np.floor(position)),
        )
        """The ceiling over the tracked noise (measured profiles): whether, per bin, the reference it drifts from, whether it drifts, where the drift quantile falls between two order statistics."""

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
        spectra = np.ascontiguousarray(spectra, np.complex64)
        gains = np.empty(spectra.shape, np.float32)
        self._run(spectra, gains, 0)
        return gains

    def weigh(self, spectra: np.ndarray, *, residue: bool = False) -> np.ndarray:
        """``spectra`` times their gains (one minus them for the residue): in place where they are complex64 and contiguous."""
        if self.method == "seed" or spectra.shape[1] == 0:
            gains = self(spectra)
            return spectra * ((1 - gains) if residue else gains)
        spectra = np.ascontiguousarray(spectra, np.complex64)
        self._run(spectra, np.zeros((0, 0, 0), np.float32), 2 if residue else 1)
        return spectra

    def _run(self, spectra: np.ndarray, gains: np.ndarray, apply: int) -> None:
        state, ring, counters, subwindow = self._tracker_arrays
        bounded, ceiling, reference, drifts, drift_index, drift_fraction = self._bound
        self._kernels.suppression_gains(
            spectra, spectra.view(np.float32), gains, apply, self._method_code, self._constants, self._noise_power,
            self.tracker is not None, state, ring, counters, subwindow,
            bounded, ceiling, reference, drifts, drift_index, drift_fraction,
            self._prior, self._table, self._table_first, self.options.speech_absence > 0, self._kernel,
            self._time_smoothing, self._time_state, self._time_started,
        )

    def _seed(self, spectra: np.ndarray) -> np.ndarray:
        magnitude = np.abs(spectra)
        safe = np.where(magnitude > 0, magnitude, 1.0)
        gain = 1.0 - self.profile.magnitude[:, np.newaxis, :] / safe
        return np.where(magnitude > 0, gain, 0.0).astype(np.float32)


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
