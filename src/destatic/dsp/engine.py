"""Streaming denoiser: spectra -> gains -> spectra, block by block.

The work splits into two steps that can run and be cached separately:
:func:`compute_gains` (analysis and the suppression rule) and
:func:`apply_gains` (analysis again, gain, inverse STFT). :func:`denoise_stream`
does both in one pass and :func:`denoise` wraps it for arrays in memory; all
three give the same samples.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from destatic.dsp._audio import as_audio, check_sample_rate, checked_blocks, iter_array_blocks
from destatic.dsp.gains import GainComputer, SuppressionOptions, resolve_method
from destatic.dsp.parallel import fill_by_channel_groups, map_channel_groups, run_channel_groups
from destatic.dsp.profile import NoiseProfile, estimate_profile, profile_from_blocks
from destatic.dsp.tones import ToneCanceller
from destatic.dsp.stft import FrameCounter, FrameSplitter, OverlapAdder, frame_count, resolve_fft_size
from destatic.errors import ParameterError

__all__ = [
    "PARALLEL_MIN_SECONDS",
    "SEED_FRAMING",
    "NoiseSpec",
    "apply_gains",
    "apply_gains_by_group",
    "compute_gains",
    "compute_gains_by_group",
    "denoise",
    "denoise_stream",
    "framing_for",
    "gain_dtype",
    "gain_shape",
    "jobs_for_length",
    "resolve_profile",
]

NoiseSpec = NoiseProfile | tuple[float, float] | np.ndarray | None
BLOCK_SIZE = 1 << 16
SEED_FRAMING: dict[str, Any] = {"n_fft": 2048, "hop_length": 512, "centered": True}
"""Framing of the ``seed`` method (librosa's defaults); :func:`framing_for` hands out copies."""
SEED_HEAD_SAMPLES = 8192
PARALLEL_MIN_SECONDS = 30.0
"""Shortest audio for which ``n_jobs=None`` starts channel processes."""


def gain_shape(n_samples: int, profile: NoiseProfile) -> tuple[int, int, int]:
    """Shape ``(channels, frames, bins)`` of all gains for ``n_samples`` samples.

    For preallocating the array (or ``.npy`` memmap) that
    :func:`compute_gains`' chunks are written into.
    """
    frames = frame_count(
        n_samples, n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
    )
    return profile.channels, frames, profile.bins


def gain_dtype(method: str | None) -> np.dtype:
    """The float type to store ``method``'s gains in: float16 where they lie in [-1, 1], else float32.

    float16 rounds such gains by at most 5e-4 (about -66 dB, inaudible) and
    halves what is stored; the ``seed`` method's gains are unbounded.
    """
    return np.dtype(np.float32 if resolve_method(method) == "seed" else np.float16)


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
    n_jobs: int | None = 1,
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
    n_jobs : int or None
        Child processes sharing the channels (1: none, all in this process);
        ``None`` is one per channel up to the CPUs available. Channels are
        filtered independently, so the result is the same for any value.
    **options
        :class:`SuppressionOptions` fields, e.g. ``max_reduction_db=20``.

    Yields
    ------
    np.ndarray [shape=(channels, frames, n_fft // 2 + 1), dtype=float32]
        Real gains; all chunks together have :func:`gain_shape` frames.
        :func:`gain_dtype` says what to store them as.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    settings = SuppressionOptions.from_options(method, options)
    yield from map_channel_groups(
        _gains_of_channels,
        checked_blocks(blocks),
        n_jobs=n_jobs,
        output_axis=0,
        per_group=_group_arguments(sample_rate, profile, method=method, options=settings),
    )


def compute_gains_by_group(
    blocks_of: Callable[[slice], Iterable[np.ndarray]],
    channels: int,
    sample_rate: int,
    profile: NoiseProfile,
    store: Callable[[slice, int, np.ndarray], None],
    *,
    method: str | None = None,
    n_jobs: int | None = 1,
    **options: Any,
) -> Iterator[int]:
    """:func:`compute_gains` where each group of channels is read, filtered and stored by its own process.

    For audio every process can read for itself (a file): nothing but progress
    crosses between processes, where :func:`compute_gains` sends the audio to
    its children and their gains back. The gains are the same.

    Parameters
    ----------
    blocks_of : callable
        ``blocks_of(group)`` gives the audio of the channels ``group`` (a
        slice), shape ``(n, group size)``, any block sizes; it is called in
        the process that filters them.
    channels : int
        The audio's channel count.
    sample_rate : int
        Hz; must equal ``profile.sample_rate``.
    profile : NoiseProfile
        As for :func:`compute_gains`.
    store : callable
        ``store(group, first_frame, gains)`` keeps the gains of the channels
        ``group``, shape ``(group size, frames, bins)``, from frame
        ``first_frame`` on; called in the same process, in frame order.
    method, n_jobs, **options
        As for :func:`compute_gains`.

    Yields
    ------
    int
        Frames done in every channel, after each chunk.
    """
    sample_rate = check_sample_rate(sample_rate)
    method = resolve_method(method)
    settings = SuppressionOptions.from_options(method, options)
    rows_of = _group_rows(sample_rate, profile, channels)

    def work(group: slice) -> Iterator[int]:
        done = 0
        blocks = checked_blocks(blocks_of(group), group.stop - group.start)
        for gains in _gains_of_channels(blocks, profile=rows_of(group), method=method, options=settings):
            store(group, done, gains)
            done += gains.shape[1]
            yield done

    for done in run_channel_groups(work, channels, n_jobs=n_jobs):
        yield min(done)


def _group_rows(sample_rate: int, profile: NoiseProfile, channels: int) -> Callable[[slice], NoiseProfile]:
    """The profile's rows for a group of ``channels`` channels (checked here, before any child starts)."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ParameterError(f"channels={channels!r} must be a positive integer")
    checked = _checked_profile(profile, sample_rate, channels)
    return checked.channel_rows


def _group_arguments(
    sample_rate: int, profile: NoiseProfile, **fixed: Any
) -> Callable[[slice, int], dict[str, Any]]:
    """Keyword arguments of a per-channel-group filter: the profile's rows for that group."""

    def arguments(group: slice, channels: int) -> dict[str, Any]:
        return {"profile": _group_rows(sample_rate, profile, channels)(group), **fixed}

    return arguments


def _gains_of_channels(
    blocks: Iterable[np.ndarray],
    *,
    profile: NoiseProfile,
    method: str,
    options: SuppressionOptions,
) -> Iterator[np.ndarray]:
    """:func:`compute_gains` for checked arguments, in this process."""
    splitter: FrameSplitter | None = None
    rule: GainComputer | None = None
    for block in blocks:
        if splitter is None:
            splitter = _splitter(profile, block.shape[1])
            rule = GainComputer(profile, method, options)
            canceller = _tone_canceller(profile)
        if canceller is not None:
            block = canceller.process(block)[0]
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
    profile: NoiseProfile,
    make_rule: Callable[[NoiseProfile, int], Callable[[np.ndarray], np.ndarray]],
    *,
    residue: bool,
) -> Iterator[np.ndarray]:
    """STFT the blocks, multiply each frame by its gains, overlap-add back to exact length.

    The blocks and the profile are checked already (:func:`checked_blocks`,
    and the profile's rows for these channels). ``make_rule(profile, channels)``
    is called once the first block shows the channel count; the rule maps
    spectra (channels, frames, bins) to their gains.
    """
    splitter: FrameSplitter | None = None
    removed_tones: _Queue | None = None
    for block in blocks:
        if splitter is None:
            channels = block.shape[1]
            splitter = _splitter(profile, channels)
            adder = _adder(profile, channels)
            rule = make_rule(profile, channels)
            canceller = _tone_canceller(profile)
            if canceller is not None and residue:
                removed_tones = _Queue(axis=0)
        if canceller is not None:
            block, tones = canceller.process(block)
            if removed_tones is not None:
                removed_tones.put(tones)
        spectra = splitter.push(block)
        if spectra.shape[1]:
            out = adder.push(_apply(spectra, rule(spectra), residue))
            if out.shape[0]:
                yield out if removed_tones is None else out + removed_tones.take(out.shape[0])
    if splitter is None:
        return
    spectra = splitter.finish()
    adder.limit = splitter.n_samples
    out = adder.push(_apply(spectra, rule(spectra), residue))
    tail = adder.finish()
    final = np.concatenate([out, tail]) if tail.shape[0] else out
    if final.shape[0]:
        yield final if removed_tones is None else final + removed_tones.take(final.shape[0])


def _tone_canceller(profile: NoiseProfile) -> ToneCanceller | None:
    """A canceller for the profile's steady tones, or None if it has none."""
    if not profile.tones.size:
        return None
    return ToneCanceller(profile.tones, profile.tone_amplitudes, profile.sample_rate)


class _Queue:
    """First in, first out along one axis: hands out exactly the requested count from stored parts.

    Holds the tones removed from blocks until their output samples are due
    (axis 0), and gain frames until their spectra come (axis 1).
    """

    def __init__(self, axis: int, empty: np.ndarray | None = None):
        self._parts: collections.deque[np.ndarray] = collections.deque()
        self._axis = axis
        self._empty = empty
        self.size = 0

    def put(self, part: np.ndarray) -> None:
        if self._empty is None:
            self._empty = np.split(part, [0], axis=self._axis)[0]
        self._parts.append(part)
        self.size += part.shape[self._axis]

    def take(self, count: int) -> np.ndarray:
        """The next `count` along the axis; the caller makes sure that many are stored."""
        taken: list[np.ndarray] = []
        self.size -= count
        while count:
            part = self._parts.popleft()
            have = part.shape[self._axis]
            if have > count:
                head, rest = np.split(part, [count], axis=self._axis)
                taken.append(head)
                self._parts.appendleft(rest)
                break
            taken.append(part)
            count -= have
        if not taken:
            return self._empty
        return taken[0] if len(taken) == 1 else np.concatenate(taken, axis=self._axis)


class _GainReader:
    """Hand out exactly the requested number of gain frames from a stream of chunks."""

    def __init__(self, gains: Iterable[np.ndarray], channels: int, bins: int):
        self._chunks = iter(gains)
        self._channels = channels
        self._bins = bins
        self._buffer = _Queue(axis=1, empty=np.zeros((channels, 0, bins), np.float32))

    def take(self, n_frames: int) -> np.ndarray:
        while self._buffer.size < n_frames:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise ParameterError(
                    f"the gains ran out: {n_frames - self._buffer.size} more frames were needed; "
                    "gains must come from compute_gains on the same audio and profile"
                )
            chunk = np.asarray(chunk)
            if chunk.ndim != 3 or chunk.shape[0] != self._channels or chunk.shape[2] != self._bins:
                raise ParameterError(
                    f"a gain chunk has shape {chunk.shape}; it must be "
                    f"({self._channels}, frames, {self._bins})"
                )
            self._buffer.put(chunk)
        return self._buffer.take(n_frames)

    def check_exhausted(self) -> None:
        extra = self._buffer.size + sum(chunk.shape[1] for chunk in self._chunks)
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
    n_jobs: int | None = 1,
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
    n_jobs : int or None
        Child processes sharing the channels (1: none, all in this process);
        ``None`` is one per channel up to the CPUs available. Channels are
        filtered independently, so the result is the same for any value.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        Output blocks; together exactly as long as the input and sample-aligned
        with it (no delay). Block sizes need not match the input's.
    """
    sample_rate = check_sample_rate(sample_rate)
    yield from map_channel_groups(
        _apply_to_channels,
        _with_their_gains(checked_blocks(blocks), gains, sample_rate, profile),
        n_jobs=n_jobs,
        output_axis=1,
        per_group=_group_arguments(sample_rate, profile, residue=residue),
    )


def apply_gains_by_group(
    blocks_of: Callable[[slice], Iterable[np.ndarray]],
    gains_of: Callable[[slice], Iterable[np.ndarray]],
    channels: int,
    sample_rate: int,
    *,
    profile: NoiseProfile,
    residue: bool = False,
    n_jobs: int | None = 1,
) -> Iterator[np.ndarray]:
    """:func:`apply_gains` where each group of channels reads its audio and gains in its own process.

    Only the output crosses between processes (where :func:`apply_gains`
    sends the audio and the gains to its children too); it is the same.

    Parameters
    ----------
    blocks_of : callable
        ``blocks_of(group)`` gives the audio of the channels ``group`` (a
        slice), shape ``(n, group size)``, any block sizes; called in the
        process that filters them.
    gains_of : callable
        ``gains_of(group)`` gives their gains, chunks of shape ``(group size,
        frames, bins)`` in frame order; called in that same process.
    channels : int
        The audio's channel count.
    sample_rate, profile, residue, n_jobs
        As for :func:`apply_gains`.

    Yields
    ------
    np.ndarray [shape=(n, channels), dtype=float32]
        As :func:`apply_gains` does.
    """
    sample_rate = check_sample_rate(sample_rate)
    rows_of = _group_rows(sample_rate, profile, channels)

    def work(group: slice) -> Iterator[np.ndarray]:
        rows = rows_of(group)
        blocks = checked_blocks(blocks_of(group), group.stop - group.start)
        pairs = _with_their_gains(blocks, gains_of(group), sample_rate, rows)
        yield from _apply_to_channels(pairs, profile=rows, residue=residue)

    for parts in run_channel_groups(work, channels, n_jobs=n_jobs):
        yield parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _with_their_gains(
    blocks: Iterable[np.ndarray], gains: Iterable[np.ndarray], sample_rate: int, profile: NoiseProfile
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pair each block with the gain frames it completes; the last block takes the rest.

    Checks that the gains have the right shape and exactly the frames the audio needs.
    """
    counter: FrameCounter | None = None
    held: tuple[np.ndarray, int] | None = None
    for block in blocks:
        if counter is None:
            profile = _checked_profile(profile, sample_rate, block.shape[1])
            reader = _GainReader(gains, block.shape[1], profile.bins)
            counter = FrameCounter(
                n_fft=profile.n_fft, hop_length=profile.hop_length, centered=profile.centered
            )
        if held is not None:
            yield held[0], reader.take(held[1])
        held = (block, counter.push(block.shape[0]))
    if held is not None and counter is not None:
        last = reader.take(held[1] + counter.finish())
        reader.check_exhausted()
        yield held[0], last


def _apply_to_channels(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    profile: NoiseProfile,
    residue: bool,
) -> Iterator[np.ndarray]:
    """:func:`apply_gains` on ``(block, its gains)`` pairs, in this process.

    Each block comes with exactly the gain frames it completes (checked by
    :func:`_with_their_gains`), so the frames wait in a queue until its spectra do.
    """
    pending = _Queue(axis=1)

    def blocks() -> Iterator[np.ndarray]:
        for block, gains in pairs:
            pending.put(gains)
            yield block

    def stored_gains(profile: NoiseProfile, channels: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda spectra: pending.take(spectra.shape[1])

    yield from _filter_blocks(blocks(), profile, stored_gains, residue=residue)


def _denoise_channels(
    blocks: Iterable[np.ndarray],
    *,
    profile: NoiseProfile,
    method: str,
    options: SuppressionOptions,
    residue: bool,
) -> Iterator[np.ndarray]:
    """:func:`denoise_stream` with a known profile and checked arguments, in this process."""
    yield from _filter_blocks(
        blocks,
        profile,
        lambda profile, _channels: GainComputer(profile, method, options),
        residue=residue,
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
    n_jobs: int | None = 1,
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
    n_jobs : int or None
        Child processes sharing the channels (1: none, all in this process);
        ``None`` is one per channel up to the CPUs available. Channels are
        filtered independently, so the result is the same for any value.
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
    yield from map_channel_groups(
        _denoise_channels,
        checked_blocks(stream),
        n_jobs=n_jobs,
        output_axis=1,
        per_group=_group_arguments(
            sample_rate,
            profile,
            method=method,
            options=SuppressionOptions.from_options(method, options),
            residue=residue,
        ),
    )


def jobs_for_length(n_samples: int, sample_rate: int, n_jobs: int | None = None) -> int | None:
    """``n_jobs`` for audio of known length: automatic (``None``) stays in this process when it is short.

    Starting a child costs more than it saves below :data:`PARALLEL_MIN_SECONDS`.
    """
    if n_jobs is None and n_samples < PARALLEL_MIN_SECONDS * sample_rate:
        return 1
    return n_jobs


def denoise(
    audio: np.ndarray,
    sample_rate: int,
    *,
    noise: NoiseSpec = None,
    method: str | None = None,
    residue: bool = False,
    n_jobs: int | None = None,
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
    n_jobs : int or None
        Processes sharing the channels (this one included). ``None`` uses
        one per channel up to the CPUs available when the audio is at least
        :data:`PARALLEL_MIN_SECONDS` long (starting a process costs more than
        it saves on short clips). The result is the same for any value.
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
    profile = _checked_profile(profile, sample_rate, samples.shape[1])

    def fill(group: slice, out: np.ndarray) -> None:
        position = 0
        for block in denoise_stream(
            iter_array_blocks(samples[:, group], BLOCK_SIZE),
            sample_rate,
            noise=profile.channel_rows(group),
            method=method,
            residue=residue,
            **options,
        ):
            out[position : position + block.shape[0]] = block
            position += block.shape[0]

    result = fill_by_channel_groups(
        fill, samples.shape, n_jobs=jobs_for_length(samples.shape[0], sample_rate, n_jobs)
    )
    return result.reshape(np.shape(audio)) if np.ndim(audio) == 1 else result
