"""The DSP core's choices, without loading it: settings and the command line offer them from here.

The methods are the registry's (:mod:`destatic.dsp.methods`); the profile and
hum modes are here.
"""

from __future__ import annotations

from typing import Literal, get_args

from destatic.dsp.methods import (
    CLASSIC_DEFAULT,
    LEARNED_DEFAULT,
    LEARNED_METHODS,
    LEARNED_NEEDS,
    LEARNED_WHEELS,
    METHODS,
    Method,
    default_method,
    learned_available,
    method_spec,
    resolve_method,
)
from destatic.dsp.options import DEFAULT_LEARNED_PROVIDER
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
    "profile_mode",
    "resolve_method",
]

ProfileMode = Literal["auto", "head", "segment", "file"]
"""How a noise profile is made."""
PROFILE_MODES: tuple[str, ...] = get_args(ProfileMode)
HumMode = Literal["auto", "off"]
"""Whether steady mains hum is cancelled coherently: ``auto`` where it is found (in a measured noise stretch, or
persisting through the file when there is none), ``off`` never (it is left to the spectral gain)."""
HUM_MODES: tuple[str, ...] = get_args(HumMode)


def profile_mode(mode: str | None, method: str | None = None, *, noise_file: bool = False, segment: bool = False) -> str:
    """The noise profile mode to use: `mode` if given (checked), else derived.

    Derived: ``file`` with a separate noise recording, ``segment`` with a
    stretch named, else the method's own default (``auto``; ``head`` for
    ``seed``, :attr:`~destatic.dsp.methods.MethodSpec.default_profile`).
    """
    if mode is not None:
        if mode not in PROFILE_MODES:
            raise ParameterError(f"mode={mode!r} must be one of {PROFILE_MODES} or None (derive it)")
        return mode
    if noise_file:
        return "file"
    if segment:
        return "segment"
    return method_spec(method).default_profile
