"""The DSP core's choices, without loading it: settings and the command line offer them from here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from destatic.errors import ParameterError

__all__ = ["DEFAULT_METHOD", "METHODS", "PROFILE_MODES", "Method", "ProfileMode", "refuse_options_for_seed", "resolve_method"]

Method = Literal["seed", "subtract", "wiener", "logmmse"]
"""The suppression methods."""
METHODS: tuple[str, ...] = get_args(Method)
DEFAULT_METHOD: Method = "logmmse"
ProfileMode = Literal["auto", "head", "segment", "file"]
"""How a noise profile is made."""
PROFILE_MODES: tuple[str, ...] = get_args(ProfileMode)


def resolve_method(method: str | None) -> str:
    """Return the method name, ``None`` meaning the default."""
    if method is None:
        return DEFAULT_METHOD
    if method not in METHODS:
        raise ParameterError(f"method={method!r} must be one of {METHODS} or None (the default)")
    return method


def refuse_options_for_seed(method: str, options: Mapping[str, Any]) -> None:
    """The ``seed`` method reproduces the tutorial: it takes no options."""
    if method == "seed" and options:
        raise ParameterError(f"method='seed' reproduces the tutorial and takes no options, got {sorted(options)}")
