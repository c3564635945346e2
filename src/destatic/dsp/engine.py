"""Streaming denoiser: spectra -> gains -> spectra, block by block.

The work splits into two steps that can run and be cached separately:
:func:`compute_gains` (analysis and the suppression rule) and
:func:`apply_gains` (analysis again, gain, inverse STFT). :func:`denoise_stream`
does both in one pass and :func:`denoise` wraps it for arrays in memory; all
three give the same samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from destatic.dsp._audio import as_audio, check_sample_rate, checked_blocks, iter_array_blocks
from destatic.dsp.gains import GainComputer, SuppressionOptions, resolve_method
from destatic.dsp.profile import NoiseProfile, estimate_profile, profile_from_blocks
from destatic.dsp.stft import FrameSplitter, OverlapAdder, frame_count, resolve_fft_size
from destatic.errors import ParameterError

__all__ = [
    "SEED_FRAMING",
    "NoiseSpec",
    "apply_gains",
    "compute_gains",
    "denoise",
    "denoise_stream",
    "framing_for",
    "gain_shape",
    "resolve_profile",
]

NoiseSpec = NoiseProfile | tuple[float, float] | np.ndarray | None
BLOCK_SIZE = 1 << 16
SEED_FRAMING: dict[str, Any] = {"n_fft": 2048, "hop_length": 512, "centered": True}
"""Framing of the ``seed`` method (librosa's defaults); :func:`framing_for` hands out copies."""
SEED_HEAD_SAMPLES = 8192


def gain_shape(n_samples: int, profile: NoiseProfile) -> tuple[int, int, int]:
    """Shape ``(channels, frames, bins)`` of all gains for ``n_samples`` samples.

    For preallocating the array (or ``.npy`` memmap) that
    :func:`compute_gains`' chunks are written into.
    """
    frames = frame_count(
        n_samples, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
    )
    return profile.channels, frames, profile.bins


def framing_for(method: str | None) -> dict[str, Any]:
    """STFT framing keyword arguments a noise profile for ``method`` must be made with.

    Pass them to :func:`estimate_profile` or :func:`profile_from_blocks`. Empty
    for every method but ``seed`` (librosa's framing): derive it from the rate.
    """
    return dict(SEED_FRAMING) if resolve_method(method) == "seed" else {}


def _framing(method: str, sample_rate: int) -> dict[str, Any]:
    if framing := framing_for(method):
        return framing
    n_fft, hop_length = resolve_fft_size(sample_rate)
    return {"n_fft": n_fft, "hop_length": hop_length, "centered": False}


def _profile_request(noise: NoiseSpec, method: str) -> dict[str, Any]:
    """Keyword arguments of profile_from_blocks for a noise spec naming a stretch."""
    if noise is None:
        if method == "seed":
            return {"mode": "head", "head_samples": SEED_HEAD_SAMPLES}
        return {"mode": "auto"}
    if isinstance(noise, tuple):
        if len(noise) != 2:
            raise ParameterError(f"noise={noise!r} must be a (start_s, end_s) pair of seconds")
        return {"mode": "segment", "start_s": noise[0], "end_s": noise[1]}
    raise ParameterError(
        f"noise of type {type(noise).__name__} is not allowed; use None (automatic), "
        "(start_s, end_s), an array holding a noise recording, or a NoiseProfile"
    )


def resolve_profile(
    audio: np.ndarray, sample_rate: int, noise: NoiseSpec = None, *, method: str | None = None
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
        The method the profile is for (``seed`` uses librosa's framing).
    """
    method = resolve_method(method)
    samples = as_audio(audio)
    if isinstance(noise, NoiseProfile):
        return _checked_profile(noise, sample_rate, samples.shape[1])
    framing = _framing(method, check_sample_rate(sample_rate))
    if isinstance(noise, np.ndarray):
        return estimate_profile(samples, sample_rate, noise_audio=noise, mode="file", **framing)
    return estimate_profile(samples, sample_rate, **_profile_request(noise, method), **framing)


def _checked_profile(profile: NoiseProfile, sample_rate: int, channels: int) -> NoiseProfile:
    if profile.sample_rate != sample_rate:
        raise ParameterError(
            f"the noise profile is for {profile.sample_rate} Hz but the audio is {sample_rate} Hz"
        )
    return profile.for_channels(channels)


def compute_gains(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    profile: NoiseProfile,
    *,
    method: str | None = None,
    **options: Any,
) -> Iterator[np.ndarray]:
    """Yield the suppression gains of a stream, chunk by chunk, in frame order.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,) or (n, channels)]
        The audio, any block sizes.
    sample_rate : int
        Hz; must equal ``profile.sample_rate``.
    profile : NoiseProfile
        Noise estimate (and framing). An ``auto`` profile only seeds the
        estimate, which keeps following the noise through the stream.
    method : str or None
        One of :data:`METHODS`; ``None`` is the default (``logmmse``).
    **options
        :class:`SuppressionOptions` fields, e.g. ``max_reduction_db=20``.

    Yields
    ------
    np.ndarray [shape=(channels, frames, n_fft // 2 + 1), dtype=float32]
        Real gains; all chunks together have :func:`gain_shape` frames. The
        ``seed`` method's gains are unbounded (store them as float32); the
        other methods' lie in [-1, 1], where float16 rounds by at most 5e-4
        (about -66 dB), inaudible, and halves the memmap.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    settings = SuppressionOptions.from_options(method, options)
    splitter: FrameSplitter | None = None
    rule: GainComputer | None = None
    for block in checked_blocks(blocks):
        if splitter is None:
            profile = _checked_profile(profile, sample_rate, block.shape[1])
            splitter = _splitter(profile, block.shape[1])
            rule = GainComputer(profile, method, settings)
        spectra = splitter.push(block)
        if spectra.shape[1]:
            yield rule(spectra)
    if splitter is not None:
        spectra = splitter.finish()
        if spectra.shape[1]:
            yield rule(spectra)


def _splitter(profile: NoiseProfile, channels: int) -> FrameSplitter:
    return FrameSplitter(
        channels, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
    )


def _adder(profile: NoiseProfile, channels: int) -> OverlapAdder:
    return OverlapAdder(
        channels, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
    )


def _filter_blocks(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    profile: NoiseProfile,
    make_rule: Callable[[NoiseProfile, int], Callable[[np.ndarray], np.ndarray]],
    *,
    residue: bool,
    before_last: Callable[[], None] | None = None,
) -> Iterator[np.ndarray]:
    """STFT the blocks, multiply each frame by its gains, overlap-add back to exact length.

    ``make_rule(profile, channels)`` is called once the first block shows the
    channel count; the rule maps spectra (channels, frames, bins) to their gains.
    ``before_last`` runs after the last frames are filtered, before the tail is yielded.
    """
    splitter: FrameSplitter | None = None
    for block in checked_blocks(blocks):
        if splitter is None:
            channels = block.shape[1]
            profile = _checked_profile(profile, sample_rate, channels)
            splitter = _splitter(profile, channels)
            adder = _adder(profile, channels)
            rule = make_rule(profile, channels)
        spectra = splitter.push(block)
        if spectra.shape[1]:
            out = adder.push(_apply(spectra, rule(spectra), residue))
            if out.shape[0]:
                yield out
    if splitter is None:
        return
    spectra = splitter.finish()
    adder.limit = splitter.n_samples
    out = adder.push(_apply(spectra, rule(spectra), residue))
    if before_last is not None:
        before_last()
    tail = adder.finish()
    final = np.concatenate([out, tail]) if tail.shape[0] else out
    if final.shape[0]:
        yield final


class _GainReader:
    """Hand out exactly the requested number of gain frames from a stream of chunks."""

    def __init__(self, gains: Iterable[np.ndarray], channels: int, bins: int):
        self._chunks = iter(gains)
        self._channels = channels
        self._bins = bins
        self._buffer: list[np.ndarray] = []
        self._buffered = 0

    def take(self, n_frames: int) -> np.ndarray:
        while self._buffered < n_frames:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise ParameterError(
                    f"the gains ran out: {n_frames - self._buffered} more frames were needed; "
                    "gains must come from compute_gains on the same audio and profile"
                )
            chunk = np.asarray(chunk)
            if chunk.ndim != 3 or chunk.shape[0] != self._channels or chunk.shape[2] != self._bins:
                raise ParameterError(
                    f"a gain chunk has shape {chunk.shape}; it must be "
                    f"({self._channels}, frames, {self._bins})"
                )
            self._buffer.append(chunk)
            self._buffered += chunk.shape[1]
        joined = self._buffer[0] if len(self._buffer) == 1 else np.concatenate(self._buffer, axis=1)
        taken, rest = joined[:, :n_frames], joined[:, n_frames:]
        self._buffer = [rest] if rest.shape[1] else []
        self._buffered = rest.shape[1]
        return taken

    def check_exhausted(self) -> None:
        extra = self._buffered + sum(chunk.shape[1] for chunk in self._chunks)
        if extra:
            raise ParameterError(
                f"{extra} gain frames were left over; gains must come from compute_gains "
                "on the same audio and profile"
            )


def _apply(spectra: np.ndarray, gains: np.ndarray, residue: bool) -> np.ndarray:
    gains = gains.astype(np.float32, copy=False)
    return spectra * ((1 - gains) if residue else gains)


def apply_gains(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    gains: Iterable[np.ndarray],
    *,
    profile: NoiseProfile,
    residue: bool = False,
) -> Iterator[np.ndarray]:
    """Apply gains from :func:`compute_gains` to the same audio; yield the result.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,) or (n, channels)]
        The audio the gains were computed for, any block sizes.
    sample_rate : int
        Hz.
    gains : iterable of np.ndarray [shape=(channels, frames, bins)]
        The gains in frame order, in chunks of any size (e.g. slices of a memmap).
    profile : NoiseProfile
        The profile the gains were computed with (gives the framing).
    residue : bool
        Yield what the gains remove (input minus output) instead.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        Output blocks; together exactly as long as the input and sample-aligned
        with it (no delay). Block sizes need not match the input's.
    """
    sample_rate = check_sample_rate(sample_rate)
    readers: list[_GainReader] = []

    def stored_gains(profile: NoiseProfile, channels: int) -> Callable[[np.ndarray], np.ndarray]:
        reader = _GainReader(gains, channels, profile.bins)
        readers.append(reader)
        return lambda spectra: reader.take(spectra.shape[1])

    yield from _filter_blocks(
        blocks,
        sample_rate,
        profile,
        stored_gains,
        residue=residue,
        before_last=lambda: readers[0].check_exhausted(),
    )


def _with_lookahead_profile(
    blocks: Iterable[np.ndarray], sample_rate: int, noise: NoiseSpec, method: str
) -> tuple[NoiseProfile, Iterator[np.ndarray]]:
    """Profile a stream from its own beginning; return the profile and the whole stream."""
    consumed: list[np.ndarray] = []
    stream = iter(blocks)

    def recording() -> Iterator[np.ndarray]:
        for block in stream:
            consumed.append(block)
            yield block

    profile = profile_from_blocks(
        recording(), sample_rate, **_profile_request(noise, method), **_framing(method, sample_rate)
    )
    return profile, itertools.chain(consumed, stream)


def denoise_stream(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    *,
    noise: NoiseSpec = None,
    method: str | None = None,
    residue: bool = False,
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
        One of :data:`METHODS`; ``None`` is the default.
    residue : bool
        Yield what is removed instead of what is kept.
    **options
        :class:`SuppressionOptions` fields.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        Denoised blocks; together exactly the input's length, sample-aligned.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    SuppressionOptions.from_options(method, options)
    if isinstance(noise, NoiseProfile):
        profile, stream = noise, iter(blocks)
    elif isinstance(noise, np.ndarray):
        profile = profile_from_blocks(
            iter_array_blocks(as_audio(noise, name="noise"), BLOCK_SIZE),
            sample_rate,
            mode="file",
            **_framing(method, sample_rate),
        )
        stream = iter(blocks)
    else:
        profile, stream = _with_lookahead_profile(blocks, sample_rate, noise, method)
    yield from _filter_blocks(
        stream,
        sample_rate,
        profile,
        lambda profile, _channels: GainComputer(
            profile, method, SuppressionOptions.from_options(method, options)
        ),
        residue=residue,
    )


def denoise(
    audio: np.ndarray,
    sample_rate: int,
    *,
    noise: NoiseSpec = None,
    method: str | None = None,
    residue: bool = False,
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
    method : {'logmmse', 'wiener', 'subtract', 'seed'} or None
        Suppression rule; ``None`` is the default (best on the benchmark).
        ``seed`` reproduces the original tutorial, defects included.
    residue : bool
        Return what was removed (``audio - denoised``) instead.
    **options
        :class:`SuppressionOptions` fields: ``max_reduction_db``,
        ``sensitivity_db``, ``smoothing``, ``freq_smoothing_hz``,
        ``time_smoothing_ms``, ``over_subtraction``, ``spectral_floor``,
        ``track_noise``.

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
    if samples.shape[0] == 0:
        SuppressionOptions.from_options(method, options)
        return np.zeros(np.shape(audio), np.float32)
    profile = resolve_profile(samples, sample_rate, noise, method=method)
    result = np.empty(samples.shape, np.float32)
    position = 0
    for block in denoise_stream(
        iter_array_blocks(samples, BLOCK_SIZE),
        sample_rate,
        noise=profile,
        method=method,
        residue=residue,
        **options,
    ):
        result[position : position + block.shape[0]] = block
        position += block.shape[0]
    return result.reshape(np.shape(audio)) if np.ndim(audio) == 1 else result
