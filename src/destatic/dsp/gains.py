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
:mod:`destatic.dsp.learned`; :func:`destatic.dsp.subtract.rule_for` makes any
method's rule, as its record (:mod:`destatic.dsp.methods`) names it.
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np

from destatic.dsp import noise as noise_module
from destatic.dsp.noise import NoiseTracker, smoothing_factor
from destatic.dsp.options import SuppressionOptions
from destatic.dsp.profile import NoiseProfile
from destatic.errors import ParameterError

__all__ = ["GainComputer", "GainRule", "SeedGain", "exp1", "tone_bins"]
PRIOR_SNR_FLOOR_DB = -25.0
TONE_BINS = 2
"""Bins either side of a profile tone's bin (a Hann window's main lobe) that the noise ceiling leaves free."""


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


def tone_bins(profile: NoiseProfile) -> np.ndarray:
    """Per bin, whether it lies within :data:`TONE_BINS` of one of the profile's tones (hum, a fan's blade)."""
    near = np.zeros(profile.bins, bool)
    if profile.tones.size:
        centre = np.rint(np.asarray(profile.tones) * profile.n_fft / profile.sample_rate).astype(int)
        index = (centre[:, np.newaxis] + np.arange(-TONE_BINS, TONE_BINS + 1)).ravel()
        near[index[(index >= 0) & (index < profile.bins)]] = True
    return near


def _triangle_kernel(width_bins: float) -> np.ndarray | None:
    half = int(width_bins // 2)
    if half < 1:
        return None
    kernel = 1.0 - np.abs(np.arange(-half, half + 1)) / (half + 1)
    return (kernel / kernel.sum()).astype(np.float32)


class _AnswersAtOnce:
    """A rule that answers every frame as its spectra come: it needs no samples and owes nothing at the end."""

    profile: NoiseProfile

    def push_samples(self, block: np.ndarray) -> None:
        """The samples behind the next spectra (:class:`GainRule`); this rule needs the spectra only."""

    def finish(self) -> np.ndarray:
        """The gains still owed at the end (:class:`GainRule`): none, this rule answers every frame at once."""
        return np.zeros((self.profile.channels, 0, self.profile.bins), np.float32)


class SeedGain(_AnswersAtOnce):
    """The ``seed`` method's gain rule: ``1 - E|N| / |Y|``, unbounded and untracked (the tutorial's).

    Parameters
    ----------
    profile : NoiseProfile
        Noise estimate, already with the stream's channel count.
    method : str
        ``seed``.
    options : SuppressionOptions
        Not used: the method takes no options.
    """

    def __init__(self, profile: NoiseProfile, method: str, options: SuppressionOptions):
        self.profile = profile

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        if spectra.shape[1] == 0:
            return np.zeros(spectra.shape, np.float32)
        magnitude = np.abs(spectra)
        safe = np.where(magnitude > 0, magnitude, 1.0)
        gain = 1.0 - self.profile.magnitude[:, np.newaxis, :] / safe
        return np.where(magnitude > 0, gain, 0.0).astype(np.float32)

    def weigh(self, spectra: np.ndarray, *, residue: bool = False) -> np.ndarray:
        """``spectra`` times their gains (one minus them for the residue)."""
        gains = self(spectra)
        return spectra * ((1 - gains) if residue else gains)


class GainComputer(_AnswersAtOnce):
    """The stateful gain rule of one stream for a classic method: call it on successive spectra.

    Parameters
    ----------
    profile : NoiseProfile
        Noise estimate, already with the stream's channel count.
    method : {'subtract', 'wiener', 'logmmse'}
    options : SuppressionOptions

    Notes
    -----
    Calling it on ``(channels, frames, bins)`` complex spectra returns float32
    gains of that shape; the result does not depend on how frames are
    grouped. It runs frame by frame in one compiled
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
            if track
            else None
        )
        self._ceiling = self._noise_ceiling(profile, options)
        kernel = _triangle_kernel(options.freq_smoothing_hz * profile.n_fft / profile.sample_rate)
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        self._kernels = _kernels
        codes = {"subtract": _kernels.METHOD_SUBTRACT, "wiener": _kernels.METHOD_WIENER, "logmmse": _kernels.METHOD_LOGMMSE}
        if method not in codes:
            raise ParameterError(f"method={method!r} is not a classic rule ({', '.join(codes)})")
        q = options.speech_absence
        alpha = options.over_subtraction
        tracker_constants = self.tracker.constants if self.tracker is not None else np.zeros(3, np.float32)
        exact = _kernels.Constants(
            scale=self.scale,
            floor=self.floor,
            log_floor=np.log(self.floor),
            dd_smoothing=options.smoothing,
            xi_min=10 ** (PRIOR_SNR_FLOOR_DB / 10),
            log_prior_odds=np.log(q / (1 - q)) if q > 0 else 0.0,
            alpha=-1.0 if alpha is None else alpha,
            beta=options.spectral_floor,
            track_smoothing=tracker_constants[0],
            speech_threshold=tracker_constants[1],
            noise_keep=tracker_constants[2],
        )
        table, table_first = _half_exp1_table()
        self._rule = _kernels.Rule(
            method=codes[method],
            constants=_kernels.Constants(*(np.float32(np.float64(value)) for value in exact)),
            noise_power=np.maximum(np.array(profile.power, np.float32) * np.float32(self.scale), np.float32(1e-30)),
            prior=np.zeros(profile.power.shape, np.float32),
            table=table,
            table_first=table_first,
            presence=options.speech_absence > 0,
        )
        """The rule, its constants in float32, the untracked noise scaled by the sensitivity and floored as the rules need it."""
        tracker = self.tracker
        self._tracking = _kernels.Tracking(
            on=tracker is not None,
            state=tracker.state if tracker is not None else np.zeros((channels, 4, 0), np.float32),
            ring=tracker.ring if tracker is not None else np.zeros((channels, 0, 0), np.float32),
            counters=tracker.counters if tracker is not None else np.zeros(2, np.int64),
            subwindow=tracker.subwindow if tracker is not None else 1,
        )
        bounded = tracker is not None and self._ceiling is not None
        quantile = options.drift_quantile if options.drift_quantile is not None else 0.0
        position = quantile * (bins - 1)
        self._bound = _kernels.Ceiling(
            on=bounded,
            limit=np.ascontiguousarray(self._ceiling[:, 0, :], np.float32) if bounded else np.zeros((channels, 0), np.float32),
            reference=np.maximum(np.array(profile.power, np.float32), np.float32(1e-30)),
            drifts=bounded and options.drift_quantile is not None,
            drift_index=int(np.floor(position)),
            drift_fraction=float(position - np.floor(position)),
        )
        """The ceiling over the tracked noise (measured profiles)."""
        time_smoothing = (
            smoothing_factor(options.time_smoothing_ms / 1000, profile.sample_rate, profile.hop_length)
            if options.time_smoothing_ms > 0
            else 0.0
        )
        self._smoothing = _kernels.Smoothing(
            kernel=np.zeros(0, np.float32) if kernel is None else kernel,
            time_constant=time_smoothing,
            time_state=np.zeros((channels, bins), np.float64),
            time_started=np.zeros(channels, np.bool_),
        )

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
            ceiling = ceiling.copy()
            ceiling[..., tone_bins(profile)] = np.inf
        return ceiling

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        if spectra.shape[1] == 0:
            return np.zeros(spectra.shape, np.float32)
        spectra = np.ascontiguousarray(spectra, np.complex64)
        gains = np.empty(spectra.shape, np.float32)
        self._run(spectra, gains, 0)
        return gains

    def weigh(self, spectra: np.ndarray, *, residue: bool = False) -> np.ndarray:
        """``spectra`` times their gains (one minus them for the residue): in place where they are complex64 and contiguous."""
        if spectra.shape[1] == 0:
            return spectra.copy()
        spectra = np.ascontiguousarray(spectra, np.complex64)
        self._run(spectra, np.zeros((0, 0, 0), np.float32), 2 if residue else 1)
        return spectra

    def _run(self, spectra: np.ndarray, gains: np.ndarray, apply: int) -> None:
        self._kernels.suppression_gains(
            spectra, spectra.view(np.float32), gains, apply, self._rule, self._tracking, self._bound, self._smoothing,
        )


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
