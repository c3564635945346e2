"""Denoising in one call: a noise profile for the audio, then subtract and inverse in one pass.

:func:`denoise` works on arrays in memory, :func:`denoise_stream` on a
stream of blocks with bounded memory; both give the samples that the two
pipeline steps (:func:`~destatic.dsp.compute_gains`, then
:func:`~destatic.dsp.apply_gains`) give.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from destatic.dsp._audio import as_audio, check_sample_rate, checked_blocks, iter_array_blocks
from destatic.dsp.choices import HumMode, profile_mode
from destatic.dsp.framing import BLOCK_SIZE, checked_profile, group_rows, stream_framing
from destatic.dsp.inverse import filter_blocks
from destatic.dsp.methods import build_options, method_spec, methods_listed, resolve_method
from destatic.dsp.options import ProfileRequest, SuppressionOptions
from destatic.dsp.parallel import jobs_for_length, run_channel_groups, split_stream
from destatic.dsp.subtract import rule_for
from destatic.dsp.profile import NoiseProfile, estimate_profile, find_hum, profile_from_blocks
from destatic.errors import ParameterError

__all__ = ["NoiseSpec", "denoise", "denoise_stream", "resolve_profile", "warm_up"]

NoiseSpec = NoiseProfile | tuple[float, float] | np.ndarray | None


def _profile_request(noise: NoiseSpec, method: str, hum: HumMode) -> ProfileRequest:
    """The profile request of a noise spec that names no recording or profile: automatic, or a stretch."""
    if noise is None:
        return ProfileRequest(profile_mode(None, method), hum=hum)
    if isinstance(noise, tuple):
        if len(noise) != 2:
            raise ParameterError(f"noise={noise!r} must be a (start_s, end_s) pair of seconds")
        return ProfileRequest("segment", start_s=noise[0], end_s=noise[1], hum=hum)
    raise ParameterError(
        f"noise of type {type(noise).__name__} is not allowed; use None (automatic), "
        "(start_s, end_s), an array holding a noise recording, or a NoiseProfile"
    )


def resolve_profile(
    audio: np.ndarray, sample_rate: int, noise: NoiseSpec = None, *, method: str | None = None, hum: HumMode = "auto"
) -> NoiseProfile:
    """Turn a ``noise`` argument of :func:`denoise` into a profile for ``audio``.

    Parameters
    ----------
    audio : np.ndarray [shape=(frames,) or (frames, channels)]
    sample_rate : int
    noise : None, (start_s, end_s), np.ndarray or NoiseProfile
        ``None`` profiles automatically (``auto``; ``head`` 8192 for ``seed``),
        a pair of seconds names a noise-only stretch, an array is a separate
        noise recording, a profile is used as is.
    method : str or None
        The method the profile is for (its framing, and its default profile mode).
    hum : {'auto', 'off'}
        Whether a measured profile holds the steady tones of its noise, and
        an ``auto`` one the mains hum persisting through ``audio``.
    """
    method = resolve_method(method)
    samples = as_audio(audio)
    if isinstance(noise, NoiseProfile):
        return checked_profile(noise, sample_rate, samples.shape[1])
    framing = stream_framing(method, check_sample_rate(sample_rate))
    if isinstance(noise, np.ndarray):
        return estimate_profile(samples, sample_rate, noise_audio=noise, mode="file", hum=hum, **framing)
    return estimate_profile(samples, sample_rate, **_profile_request(noise, method, hum).keywords(), **framing)


def _denoise_channels(
    blocks: Iterable[np.ndarray],
    *,
    profile: NoiseProfile,
    method: str,
    options: SuppressionOptions,
    residue: bool,
) -> Iterator[np.ndarray]:
    """:func:`denoise_stream` with a known profile and checked arguments, in this thread."""
    yield from filter_blocks(
        blocks,
        profile,
        lambda profile, _channels: rule_for(profile, method, options),
        residue=residue,
    )


def _with_lookahead_profile(
    blocks: Iterable[np.ndarray], sample_rate: int, noise: NoiseSpec, method: str, hum: HumMode
) -> tuple[NoiseProfile, Iterator[np.ndarray]]:
    """Profile a stream from its own beginning; return the profile and the whole stream.

    An ``auto`` profile looks for hum in what it holds back (the first 8 s):
    a stream is not seen whole.
    """
    consumed: list[np.ndarray] = []
    stream = iter(blocks)

    def recording() -> Iterator[np.ndarray]:
        for block in stream:
            consumed.append(block)
            yield block

    request = {**_profile_request(noise, method, hum).keywords(), **stream_framing(method, sample_rate)}
    profile = profile_from_blocks(recording(), sample_rate, **request)
    if request["mode"] == "auto" and hum == "auto" and consumed:
        held = np.concatenate([as_audio(block) for block in consumed])
        if tones := find_hum(lambda start, stop: held[start:stop], held.shape[0], sample_rate):
            profile = profile_from_blocks([held], sample_rate, **request, tones=tones)
    return profile, itertools.chain(consumed, stream)


@methods_listed
def denoise_stream(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    *,
    noise: NoiseSpec = None,
    method: str | None = None,
    residue: bool = False,
    n_jobs: int | None = 1,
    hum: HumMode = "auto",
    suppression: SuppressionOptions | None = None,
    **options: Any,
) -> Iterator[np.ndarray]:
    """Denoise a stream of blocks in one pass with bounded memory.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,) or (n, channels)]
        The audio in order, any block sizes (e.g. ``soundfile.blocks``).
    sample_rate : int
        Hz, 8000 to 192000.
    noise : None, (start_s, end_s), np.ndarray or NoiseProfile
        As in :func:`denoise`. ``None`` and a stretch are measured on the
        stream itself: the blocks up to the end of the stretch (8 s for
        ``auto``) are held back until the profile is known.
    method : str or None
        One of {methods}; ``None`` is the default.
    residue : bool
        Yield what is removed instead of what is kept.
    n_jobs : int or None
        Threads sharing the channels (1: all in the calling thread); ``None``
        is one per channel up to the CPUs available. Channels are filtered
        independently, so the result is the same for any value.
    hum : {'auto', 'off'}
        As in :func:`denoise`; an ``auto`` profile looks for hum in the
        first 8 s only (those it holds back), not through the whole stream.
    suppression, **options
        As in :func:`denoise`.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        Denoised blocks; together exactly the input's length, sample-aligned.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    settings = build_options(method, options, suppression)
    if isinstance(noise, NoiseProfile):
        profile, stream = noise, iter(blocks)
    elif isinstance(noise, np.ndarray):
        profile = profile_from_blocks(
            iter_array_blocks(as_audio(noise, name="noise"), BLOCK_SIZE),
            sample_rate,
            mode="file",
            hum=hum,
            **stream_framing(method, sample_rate),
        )
        stream = iter(blocks)
    else:
        profile, stream = _with_lookahead_profile(blocks, sample_rate, noise, method, hum)

    def work_for(channels: int) -> Callable[[slice, Iterator[np.ndarray]], Iterator[np.ndarray]]:
        rows_of = group_rows(sample_rate, profile, channels)
        return lambda group, items: _denoise_channels(items, profile=rows_of(group), method=method, options=settings, residue=residue)

    yield from split_stream(
        checked_blocks(stream), work_for, n_jobs=n_jobs, axis=1, together=lambda channels: method_spec(method).filters_together(settings, channels)
    )


@methods_listed
def denoise(
    audio: np.ndarray,
    sample_rate: int,
    *,
    noise: NoiseSpec = None,
    method: str | None = None,
    residue: bool = False,
    n_jobs: int | None = None,
    hum: HumMode = "auto",
    suppression: SuppressionOptions | None = None,
    **options: Any,
) -> np.ndarray:
    """Remove steady background noise from audio held in memory.

    Parameters
    ----------
    audio : np.ndarray [shape=(frames,) or (frames, channels)]
        Float samples (full scale 1.0) or integers (scaled by their type's
        full scale). NaN or infinite samples are refused.
    sample_rate : int
        Hz, 8000 to 192000.
    noise : None, (start_s, end_s), np.ndarray or NoiseProfile
        ``None``: find the noise automatically (minimum statistics, then
        tracked through the file). ``(start_s, end_s)``: a noise-only stretch
        of ``audio`` in seconds. An array: a separate noise recording (same
        rate, same channels or mono). A :class:`NoiseProfile`: used as is.
    method : str or None
        Suppression rule, one of {methods}; ``None`` is the default
        (:func:`~destatic.dsp.default_method`, best on the benchmark).
    residue : bool
        Return what was removed (``audio - denoised``) instead.
    n_jobs : int or None
        Threads sharing the channels (the calling one included). ``None``
        uses one per channel up to the CPUs available when the audio is at
        least :data:`~destatic.dsp.parallel.PARALLEL_MIN_SECONDS` long. The result is the same for
        any value.
    hum : {'auto', 'off'}
        ``auto``: steady mains hum is cancelled coherently where it is found:
        in a measured noise stretch or recording, or (``noise=None``) as a
        50 or 60 Hz series persisting through the audio
        (:func:`~destatic.dsp.profile.find_hum`). ``off``: it is left to the
        spectral gain. A :class:`NoiseProfile` given is used as is.
    **options
        The options the method takes (its record's ``accepts``,
        :data:`~destatic.dsp.methods.METHOD_SPECS`): fields of
        :class:`~destatic.dsp.SuppressionOptions` such as ``max_reduction_db``,
        ``sensitivity_db``, ``smoothing``, and for the learned methods those of
        :class:`~destatic.dsp.options.LearnedOptions`; ``seed`` takes none.
    suppression : SuppressionOptions or None
        Instead of ``**options``: the method's option record, built already.

    Returns
    -------
    np.ndarray [shape=audio.shape, dtype=float32]
        Sample-aligned with the input. Values may exceed 1.0 slightly; clip
        before converting to integers.

    Examples
    --------
    >>> clean = denoise(noisy, 16000)                      # doctest: +SKIP
    >>> clean = denoise(noisy, 16000, noise=(0.0, 1.0))    # doctest: +SKIP
    """
    samples = as_audio(audio)
    method = resolve_method(method)
    settings = build_options(method, options, suppression)
    if samples.shape[0] == 0:
        return np.zeros(np.shape(audio), np.float32)
    from destatic.dsp._numba import say_if_compiling

    say_if_compiling()
    profile = resolve_profile(samples, sample_rate, noise, method=method, hum=hum)
    profile = checked_profile(profile, sample_rate, samples.shape[1])
    jobs = 1 if method_spec(method).filters_together(settings, samples.shape[1]) else jobs_for_length(samples.shape[0], sample_rate, n_jobs)
    result = np.empty(samples.shape, np.float32)

    def work(group: slice) -> Iterator[int]:
        """Denoise the channels `group` into their columns of `result` (the samples are checked already)."""
        out, position = result[:, group], 0
        blocks = (np.ascontiguousarray(block) for block in iter_array_blocks(samples[:, group], BLOCK_SIZE))
        rows = profile.channel_rows(group)
        for block in _denoise_channels(blocks, profile=rows, method=method, options=settings, residue=residue):
            out[position : position + block.shape[0]] = block
            position += block.shape[0]
        yield position

    for _ in run_channel_groups(work, samples.shape[1], n_jobs=jobs):
        pass
    return result.reshape(np.shape(audio)) if np.ndim(audio) == 1 else result


def warm_up(method: str | None = None, sample_rate: int = 48000) -> None:
    """Clean a second of generated stereo noise with `method`, load what the search for hum uses, and what a gains file's rows do.

    For a process that will clean audio soon (a step child started as a
    file's audio is extracted): its modules import and its compiled loops
    load from numba's cache now, not in its first step. The same numbers come
    out of every later call; this only moves their start-up cost.
    """
    from destatic.dsp.gain_file import as_stored
    from destatic.dsp.inverse import apply_gains
    from destatic.dsp.subtract import gain_dtype, gain_shape
    from destatic.dsp.tones import prominence

    noise = np.random.default_rng(0).standard_normal((sample_rate, 2)).astype(np.float32) * 1e-3
    denoise(noise, sample_rate, method=method, n_jobs=1)
    prominence(np.zeros(64), 1.0)
    stored = gain_dtype(method)
    if stored == np.float16:  # the steps' gains file: its rows stored as float16 and applied from it
        profile = estimate_profile(noise, sample_rate)
        halves = as_stored(np.ones(gain_shape(noise.shape[0], profile), np.float32), stored)
        for _ in apply_gains([noise], sample_rate, [halves], profile=profile):
            pass
