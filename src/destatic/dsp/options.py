"""The suppression methods' options, checked when built: what the settings and ``**options`` become for the DSP.

Loads no numpy, so that the settings can build these records without the DSP
core. Which record a method takes, and which of its fields, is the method
registry's to say (:mod:`destatic.dsp.methods`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from destatic.errors import ParameterError

__all__ = [
    "CLASSIC_REDUCTION_DB",
    "DEFAULT_LEARNED_PROVIDER",
    "HEAD_SAMPLES",
    "HYBRID_REDUCTION_DB",
    "HybridOptions",
    "LearnedOptions",
    "ProfileRequest",
    "SuppressionOptions",
    "check_number",
    "deepest_reduction_db",
]

DEFAULT_LEARNED_PROVIDER = "CPUExecutionProvider"
"""The onnxruntime execution provider the learned methods' model runs on unless told otherwise."""
HEAD_SAMPLES = 8192
"""Length of a ``head`` noise clip: the first 8192 samples, as in the seed tutorial."""
CLASSIC_REDUCTION_DB = 30.0
"""The classic rules' maximum reduction unless told otherwise (``deepfilter``'s too); the hybrid's classic gain never
goes deeper either: there its estimation errors would become musical noise and holes."""
HYBRID_REDUCTION_DB = 80.0
"""The hybrid's maximum reduction unless told otherwise: with a measured noise, where it mixes in DeepFilterNet3's gain,
that gain may go this deep (at 30 dB, mic hiss under a voice stayed audible: issue 30's ninth attempt)."""


def deepest_reduction_db(method: str, max_reduction_db: float, measured: bool) -> float:
    """How deep, in dB, any gain of `method` goes under a maximum reduction of `max_reduction_db`.

    Parameters
    ----------
    method : str
        A method's name (:data:`~destatic.dsp.methods.METHODS`).
    max_reduction_db : float > 0
        The maximum reduction it was given (or its default).
    measured : bool
        Whether the noise profile was measured (not ``auto``).

    Returns
    -------
    float
        `max_reduction_db`, but for the hybrid with an automatic profile no
        more than :data:`CLASSIC_REDUCTION_DB`: its learned gain goes past the
        classic floor only near voices over a measured noise.
    """
    if method == "hybrid" and not measured:
        return min(max_reduction_db, CLASSIC_REDUCTION_DB)
    return max_reduction_db


def check_number(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    allowed: str,
) -> float:
    """Return ``value`` as float if it is finite and within [low, high], else raise :class:`ParameterError`."""
    try:
        finite = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite or (low is not None and value < low) or (high is not None and value > high):
        raise ParameterError(f"{name}={value!r} must be {allowed}")
    return float(value)


@dataclass(frozen=True)
class SuppressionOptions:
    """Controls of the classic rules (``subtract``, ``wiener``, ``logmmse``), which the ``hybrid`` shares.

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
    """

    max_reduction_db: float = CLASSIC_REDUCTION_DB
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


@dataclass(frozen=True)
class LearnedOptions(SuppressionOptions):
    """The learned methods' options: the classic ones (the ``hybrid``'s classic rule), and DeepFilterNet3's own.

    Parameters
    ----------
    voice_mix : float in [0, 1]
        ``hybrid`` only: how far (in dB) the bins it hands to DeepFilterNet3
        (noisy bins of voice frames, steady-noise bins near them) move from
        the classic gain towards DeepFilterNet3's gain. Near voices, with a
        measured noise, the bins where DeepFilterNet3 removes no more than
        that noise then go all the way down to its gain, whatever this is
        (``method="logmmse"`` keeps the classic gain alone).
    learned_stereo : {'mid', 'each'}
        On stereo, one DeepFilterNet3 pass on the channels' mean drives both
        (half the cost), or one pass per channel. A pass per channel took out
        1-2 dB more noise on the benchmark's stereo items but scored within
        0.03 PESQ (hybrid: 0.07-0.11 lower on three of four; deepfilter:
        0.022 higher on average). Other channel counts always get one each.
    learned_provider : str
        The onnxruntime execution provider DeepFilterNet3 runs on
        (``CPUExecutionProvider``; others as the installed onnxruntime offers them).
    """

    voice_mix: float = 0.7
    learned_stereo: str = "mid"
    learned_provider: str = DEFAULT_LEARNED_PROVIDER

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("voice_mix", self.voice_mix, low=0.0, high=1.0, allowed="a number from 0 to 1")
        if self.learned_stereo not in ("mid", "each"):
            raise ParameterError(f"learned_stereo={self.learned_stereo!r} must be 'mid' or 'each'")
        if not isinstance(self.learned_provider, str) or not self.learned_provider.endswith("ExecutionProvider"):
            raise ParameterError(f"learned_provider={self.learned_provider!r} must name an onnxruntime execution provider")


@dataclass(frozen=True)
class HybridOptions(LearnedOptions):
    """The ``hybrid``'s options: the learned methods', with its own maximum reduction.

    Parameters
    ----------
    max_reduction_db : float > 0
        Largest attenuation of any bin in dB, :data:`HYBRID_REDUCTION_DB` unless
        told otherwise. Only DeepFilterNet3's gain, mixed in near voices with a
        measured noise, goes deeper than :data:`CLASSIC_REDUCTION_DB`: the
        classic gain, the bins lowered to DeepFilterNet3's gain where it removes
        only the noise, and every gain with an automatic profile stay within
        the smaller of the two (deeper, DeepFilterNet3's gain cost 0.04-0.07
        PESQ on real noisy pairs without a noise-only stretch).
    """

    max_reduction_db: float = HYBRID_REDUCTION_DB


@dataclass(frozen=True)
class ProfileRequest:
    """Where a noise profile is measured, and whether mains hum is cancelled: the stretch-naming keywords of
    :func:`~destatic.dsp.profile_from_blocks`, as one record the settings build and the profile step takes.

    Parameters
    ----------
    mode : {'auto', 'head', 'segment', 'file'}
        Resolved already: no method default is left to derive.
    head_samples : int > 0
        Length of the ``head`` clip.
    start_s, end_s : float or None
        The noise-only stretch of ``segment``, seconds.
    hum : {'auto', 'off'}
        Whether steady mains hum is cancelled coherently.
    """

    mode: str
    head_samples: int = HEAD_SAMPLES
    start_s: float | None = None
    end_s: float | None = None
    hum: str = "auto"

    def keywords(self) -> dict[str, object]:
        """The record as keyword arguments of :func:`~destatic.dsp.profile_from_blocks`."""
        return {"mode": self.mode, "head_samples": self.head_samples, "start_s": self.start_s, "end_s": self.end_s, "hum": self.hum}
