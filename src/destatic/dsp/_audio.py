"""Argument checks shared by the DSP core: one place that says what audio is."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from numbers import Integral, Real

import numpy as np

from destatic.dsp.options import check_number
from destatic.errors import ParameterError, UncleanableAudioError

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 64
# Far above full scale (1.0), far below where float32 power overflows.
MAX_ABS_SAMPLE = 1e6


def check_sample_rate(sample_rate: int) -> int:
    """Return ``sample_rate`` as an int; raise :class:`ParameterError` if it is no number, :class:`UncleanableAudioError` outside 8-192 kHz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Integral | Real):
        raise ParameterError(f"sample_rate={sample_rate!r} must be an integer number of Hz")
    if int(sample_rate) != sample_rate or not (
        MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE
    ):
        raise UncleanableAudioError(
            f"sample_rate={sample_rate!r} must be a whole number of Hz "
            f"from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}"
        )
    return int(sample_rate)


def as_audio(audio: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Check audio samples and return them as float32 of shape ``(frames, channels)``.

    Float input is taken as is (full scale is 1.0); integer input is scaled by
    its type's full scale (int16 by 32768, unsigned types centred first), so
    nothing is clipped or wrapped.

    Parameters
    ----------
    audio : np.ndarray [shape=(frames,) or (frames, channels)]
        Samples, real floats or integers.
    name : str
        How the argument is called in error messages.

    Returns
    -------
    np.ndarray [shape=(frames, channels), dtype=float32]
        A C-contiguous view or copy.

    Raises
    ------
    ParameterError
        Wrong rank, complex or non-numeric samples.
    UncleanableAudioError
        Too many channels, NaN or inf, float samples beyond +-MAX_ABS_SAMPLE.
    """
    array = np.asarray(audio)
    if array.ndim not in (1, 2):
        raise ParameterError(
            f"{name} has shape {array.shape}; it must be (frames,) or (frames, channels)"
        )
    if array.ndim == 1:
        array = array[:, np.newaxis]
    channels = array.shape[1]
    if not 1 <= channels <= MAX_CHANNELS:
        raise UncleanableAudioError(
            f"{name} has {channels} channels (shape {array.shape}); 1 to {MAX_CHANNELS} "
            "are allowed, with time on the first axis: (frames, channels)"
        )
    kind = array.dtype.kind
    if kind == "f":
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
            result = np.ascontiguousarray(array, dtype=np.float32)
        peak = float(max(result.max(initial=0.0), -result.min(initial=0.0)))
        if not np.isfinite(peak):
            bad = int(np.count_nonzero(~np.isfinite(result)))
            raise UncleanableAudioError(
                f"{name} holds {bad} NaN or infinite samples (or values beyond float32); "
                "only finite samples are allowed"
            )
        if peak > MAX_ABS_SAMPLE:
            raise UncleanableAudioError(
                f"{name} has a sample of magnitude {peak:.3g}; float audio must stay within "
                f"+-{MAX_ABS_SAMPLE:g} (full scale is 1.0): rescale it first"
            )
        return result
    if kind in "iu":
        info = np.iinfo(array.dtype)
        scale = (int(info.max) + 1) if kind == "i" else (int(info.max) + 1) // 2
        offset = 0 if kind == "i" else scale
        result = array.astype(np.float64)
        if offset:
            result -= offset
        return np.ascontiguousarray(result / scale, dtype=np.float32)
    if kind == "b":
        raise ParameterError(f"{name} has boolean samples; numbers are required")
    raise ParameterError(
        f"{name} has dtype {array.dtype}; real float or integer samples are required"
    )


def iter_array_blocks(audio: np.ndarray, block_size: int) -> Iterator[np.ndarray]:
    """Yield successive views of ``audio`` (frames first), ``block_size`` frames each."""
    for start in range(0, audio.shape[0], block_size):
        yield audio[start : start + block_size]


def checked_blocks(
    blocks: Iterable[np.ndarray], channels: int | None = None
) -> Iterator[np.ndarray]:
    """Validate each block of a stream and check they all have the same channel count."""
    for index, block in enumerate(blocks):
        checked = as_audio(block, name=f"block {index}")
        if channels is None:
            channels = checked.shape[1]
        elif checked.shape[1] != channels:
            raise ParameterError(
                f"block {index} has {checked.shape[1]} channels but earlier blocks have "
                f"{channels}; every block of a stream must have the same channels"
            )
        yield checked
