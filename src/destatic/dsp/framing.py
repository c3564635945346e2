"""How a noise profile frames a stream: the shared pieces of the subtract and inverse steps.

A profile carries its STFT framing (``n_fft``, hop, centred or aligned) and
its steady tones; both steps cut the stream into the same frames, after the
same tones are cancelled, and check the profile against the stream the same
way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from destatic.dsp.methods import SEED_FRAMING, method_spec
from destatic.dsp.profile import NoiseProfile
from destatic.dsp.stft import FrameSplitter, OverlapAdder, resolve_fft_size
from destatic.dsp.tones import ToneCanceller
from destatic.errors import ParameterError, UncleanableAudioError

__all__ = [
    "BLOCK_SIZE",
    "SEED_FRAMING",
    "adder",
    "checked_profile",
    "framing_for",
    "group_rows",
    "splitter",
    "stream_framing",
    "tone_canceller",
]

BLOCK_SIZE = 1 << 16
"""Samples per block when audio in memory is streamed."""


def framing_for(method: str | None) -> dict[str, Any]:
    """STFT framing keyword arguments a noise profile for ``method`` must be made with.

    Pass them to :func:`~destatic.dsp.estimate_profile` or
    :func:`~destatic.dsp.profile_from_blocks`. Empty for a method whose
    record names no framing (every one but ``seed``, librosa's): derive it
    from the rate.
    """
    return dict(method_spec(method).framing or {})


def stream_framing(method: str, sample_rate: int) -> dict[str, Any]:
    """:func:`framing_for` with the rate's defaults filled in: ``n_fft``, ``hop_length``, ``centered``."""
    if framing := framing_for(method):
        return framing
    n_fft, hop_length = resolve_fft_size(sample_rate)
    return {"n_fft": n_fft, "hop_length": hop_length, "centered": False}


def checked_profile(profile: NoiseProfile, sample_rate: int, channels: int) -> NoiseProfile:
    """``profile`` for a stream of ``channels`` channels at ``sample_rate``, or raise if it does not fit."""
    if profile.sample_rate != sample_rate:
        raise UncleanableAudioError(
            f"the noise profile is for {profile.sample_rate} Hz but the audio is {sample_rate} Hz"
        )
    return profile.for_channels(channels)


def group_rows(sample_rate: int, profile: NoiseProfile, channels: int) -> Callable[[slice], NoiseProfile]:
    """The profile's rows for each group of a ``channels``-channel stream (checked here, before any child starts)."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ParameterError(f"channels={channels!r} must be a positive integer")
    return checked_profile(profile, sample_rate, channels).channel_rows


def splitter(profile: NoiseProfile, channels: int) -> FrameSplitter:
    """A frame splitter with the profile's framing."""
    return FrameSplitter(channels, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered)


def adder(profile: NoiseProfile, channels: int) -> OverlapAdder:
    """An overlap-adder with the profile's framing."""
    return OverlapAdder(channels, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered)


def tone_canceller(profile: NoiseProfile) -> ToneCanceller | None:
    """A canceller for the profile's steady tones, or None if it has none."""
    if not profile.tones.size:
        return None
    return ToneCanceller(profile.tones, profile.tone_amplitudes, profile.sample_rate)
