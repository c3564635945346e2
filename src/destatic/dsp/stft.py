"""Streaming short-time Fourier transform with exact length and zero delay.

Two framings share one engine:

``aligned`` (destatic's own)
    Frame ``k`` covers samples ``[k*hop - (n_fft - hop), k*hop + hop)``: every
    input sample is covered by all ``n_fft // hop`` frames, so the unit-gain
    round trip is exact at the edges too and nothing wraps around.
``centered`` (librosa's ``center=True`` with zero padding)
    Frame ``k`` is centred on sample ``k*hop``; used by the ``seed`` method to
    reproduce the tutorial.

Analysis and synthesis both use a periodic Hann window; the overlap-add is
divided by the accumulated squared window (as :func:`librosa.istft` does).
"""

from __future__ import annotations


import numpy as np
import scipy.fft

from destatic.dsp._audio import check_sample_rate
from destatic.errors import ParameterError

__all__ = [
    "FrameCounter",
    "FrameSplitter",
    "OverlapAdder",
    "default_n_fft",
    "frame_count",
    "hann_window",
    "resolve_fft_size",
    "spectrogram_db",
]

WINDOW_SECONDS = 0.064


def default_n_fft(sample_rate: int) -> int:
    """FFT size for ``sample_rate``: about 64 ms, a fast FFT length divisible by 4.

    512 at 8 kHz, 1024 at 16 kHz, 2880 at 44.1 kHz, 3072 at 48 kHz, 12288 at
    192 kHz. 64 ms resolves mains hum harmonics (50 Hz apart) while keeping
    speech onsets; the hop is a quarter of it.
    """
    sample_rate = check_sample_rate(sample_rate)
    n_fft = scipy.fft.next_fast_len(round(sample_rate * WINDOW_SECONDS), real=True)
    while n_fft % 4:
        n_fft = scipy.fft.next_fast_len(n_fft + 1, real=True)
    return n_fft


def resolve_fft_size(
    sample_rate: int, n_fft: int | None = None, hop_length: int | None = None
) -> tuple[int, int]:
    """Return ``(n_fft, hop_length)``, deriving ``None`` ones (hop is ``n_fft // 4``)."""
    if n_fft is None:
        n_fft = default_n_fft(sample_rate)
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 16 or n_fft % 2:
        raise ParameterError(f"n_fft={n_fft!r} must be an even integer >= 16")
    if hop_length is None:
        hop_length = n_fft // 4
    if (
        isinstance(hop_length, bool)
        or not isinstance(hop_length, int)
        or hop_length < 1
        or n_fft % hop_length
        or n_fft // hop_length < 2
    ):
        raise ParameterError(
            f"hop_length={hop_length!r} must be a positive integer dividing n_fft={n_fft} "
            "at least twice (n_fft // 4 is the default)"
        )
    return n_fft, hop_length


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``n_fft`` samples (float32), as ``get_window('hann')``."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _lead(n_fft: int, hop_length: int, centered: bool) -> int:
    return n_fft // 2 if centered else n_fft - hop_length


def frame_count(
    n_samples: int,
    sample_rate: int | None = None,
    *,
    n_fft: int | None = None,
    hop_length: int | None = None,
    centered: bool = False,
) -> int:
    """Number of STFT frames the engine makes for ``n_samples`` samples.

    Lets a caller preallocate a gain array of shape
    ``(channels, frame_count(...), n_fft // 2 + 1)``.

    Parameters
    ----------
    n_samples : int >= 0
        Input length in samples (per channel).
    sample_rate : int or None
        Used to derive ``n_fft`` when it is ``None``.
    n_fft, hop_length : int or None
        FFT size and hop; ``None`` derives them as :func:`resolve_fft_size` does.
    centered : bool
        ``True`` for librosa's centred framing (the ``seed`` method).

    Returns
    -------
    int
        ``ceil(n / hop) + n_fft / hop - 1`` aligned, ``1 + n // hop`` centred, 0 for no samples.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 0:
        raise ParameterError(f"n_samples={n_samples!r} must be a non-negative integer")
    if n_fft is None and sample_rate is None:
        raise ParameterError("frame_count needs sample_rate or n_fft")
    n_fft, hop_length = resolve_fft_size(
        sample_rate if sample_rate is not None else 8000, n_fft, hop_length
    )
    n_samples = int(n_samples)
    if n_samples == 0:
        return 0
    if centered:
        return 1 + n_samples // hop_length
    return -(-n_samples // hop_length) + n_fft // hop_length - 1


class FrameCounter:
    """Count the frames a stream completes, block by block, as :class:`FrameSplitter` makes them.

    For pairing each block with its share of per-frame data (stored gains)
    without computing any spectra.
    """

    def __init__(self, *, n_fft: int, hop_length: int, centered: bool = False, padded: bool = True):
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.centered = centered
        self.padded = padded
        self.n_samples = 0
        self.frames_done = 0
        self.pending = _lead(n_fft, hop_length, centered) if padded else 0

    def push(self, n_samples: int) -> int:
        """Take ``n_samples`` more samples; return how many frames they complete."""
        self.n_samples += n_samples
        self.pending += n_samples
        if self.pending < self.n_fft:
            return 0
        frames = (self.pending - self.n_fft) // self.hop_length + 1
        self.pending -= frames * self.hop_length
        self.frames_done += frames
        return frames

    def finish(self) -> int:
        """Return the frames the end of the stream completes (zero-padded)."""
        if not self.padded:
            remaining = 1 if self.frames_done == 0 and self.n_samples > 0 else 0
        else:
            remaining = frame_count(
                self.n_samples, n_fft=self.n_fft, hop_length=self.hop_length, centered=self.centered
            ) - self.frames_done
        remaining = max(remaining, 0)
        self.frames_done += remaining
        return remaining


class FrameSplitter:
    """Cut a stream of sample blocks into Hann-windowed spectra.

    Parameters
    ----------
    channels : int
        Channel count of every block.
    n_fft, hop_length : int
        FFT size and hop, in samples.
    centered : bool
        Framing: ``False`` aligned (default), ``True`` librosa-centred.

    Notes
    -----
    :meth:`push` takes blocks of shape ``(n, channels)`` and returns the spectra
    of the frames it completes, shape ``(channels, frames, n_fft // 2 + 1)``
    complex64; :meth:`finish` zero-pads the end and returns the rest, so the
    total is :func:`frame_count` of the samples pushed.

    With ``padded=False`` only frames lying wholly inside the stream are made
    (one zero-padded frame if the stream is shorter than ``n_fft``): for noise
    profiles, where padding would bias the estimate low.
    """

    def __init__(
        self,
        channels: int,
        *,
        n_fft: int,
        hop_length: int,
        centered: bool = False,
        padded: bool = True,
    ):
        self.channels = channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self._counter = FrameCounter(
            n_fft=n_fft, hop_length=hop_length, centered=centered, padded=padded
        )
        self._window = hann_window(n_fft)
        self._held = self._counter.pending
        self._buffer = np.zeros((channels, max(self._held, 1)), np.float32)
        """The samples not yet framed, channels-major; the first ``_held`` of each row count."""
        self._frames = np.empty(0, np.float32)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_samples(self) -> int:
        """Samples pushed so far."""
        return self._counter.n_samples

    @property
    def frames_done(self) -> int:
        """Frames returned so far."""
        return self._counter.frames_done

    def _room(self, samples: int) -> None:
        """Make the buffer hold at least ``samples`` per channel."""
        if self._buffer.shape[1] < samples:
            grown = np.zeros((self.channels, max(samples, 2 * self._buffer.shape[1])), np.float32)
            grown[:, : self._held] = self._buffer[:, : self._held]
            self._buffer = grown

    def _spectra(self, n_frames: int) -> np.ndarray:
        """The spectra of the next ``n_frames`` frames of the held samples; drop the samples no frame needs any more."""
        if n_frames <= 0:
            return np.zeros((self.channels, 0, self.bins), np.complex64)
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        size = self.channels * n_frames * self.n_fft
        if self._frames.size < size:
            self._frames = np.empty(size, np.float32)
        frames = self._frames[:size].reshape(self.channels, n_frames, self.n_fft)
        _kernels.frames_into(frames, self._buffer, self._window, self.hop_length)
        used = min(n_frames * self.hop_length, self._held)
        self._buffer[:, : self._held - used] = self._buffer[:, used : self._held]
        self._held -= used
        return scipy.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add a ``(n, channels)`` float32 block; return the spectra it completes."""
        if block.shape[0] == 0:
            return self._spectra(0)
        from destatic.dsp import _kernels  # noqa: PLC0415

        self._room(self._held + block.shape[0])
        _kernels.append_columns(self._buffer, self._held, np.ascontiguousarray(block, np.float32))
        self._held += block.shape[0]
        return self._spectra(self._counter.push(block.shape[0]))

    def finish(self) -> np.ndarray:
        """Zero-pad the end of the stream and return the remaining spectra."""
        remaining = self._counter.finish()
        if remaining <= 0:
            return self._spectra(0)
        needed = (remaining - 1) * self.hop_length + self.n_fft
        self._room(needed)
        self._buffer[:, self._held : needed] = 0.0
        self._held = max(self._held, needed)
        return self._spectra(remaining)


class OverlapAdder:
    """Turn a stream of spectra back into samples (inverse of :class:`FrameSplitter`).

    :meth:`push` takes spectra ``(channels, frames, bins)`` and returns the
    samples they complete, ``(n, channels)`` float32, with the framing's lead
    trimmed so output sample ``i`` lines up with input sample ``i``. Set
    :attr:`limit` to the input length before the last push; :meth:`finish`
    returns whatever is still owed up to it.

    Each frame is windowed again and added in frame order (a compiled loop)
    into a buffer that holds the overlapping tail between calls, so the
    samples do not depend on how frames are grouped into calls.
    """

    def __init__(self, channels: int, *, n_fft: int, hop_length: int, centered: bool = False):
        self.channels = channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.limit: int | None = None
        self.emitted = 0
        self._lead = _lead(n_fft, hop_length, centered)
        self._to_skip = self._lead
        self._window = hann_window(n_fft)
        self._squared = self._window * self._window
        self._tail = n_fft - hop_length
        self._total = np.zeros((channels, self._tail), np.float32)
        self._weight = np.zeros(self._tail, np.float32)

    def _owed(self, available: int) -> tuple[int, int]:
        """Of ``available`` finished samples: how many to skip (the lead), then how many to give."""
        skip = min(self._to_skip, available)
        count = available - skip
        if self.limit is not None:
            count = min(count, max(self.limit - self.emitted, 0))
        self._to_skip -= skip
        self.emitted += count
        return skip, count

    def push(self, spectra: np.ndarray) -> np.ndarray:
        """Overlap-add ``spectra``; return the completed samples ``(n, channels)``."""
        n_frames = spectra.shape[1]
        if n_frames == 0:
            return np.zeros((0, self.channels), np.float32)
        from destatic.dsp import _kernels  # noqa: PLC0415  (numba loads on first use, not on import)

        frames = scipy.fft.irfft(spectra, n=self.n_fft, axis=-1).astype(np.float32, copy=False)
        done = n_frames * self.hop_length
        if self._total.shape[1] < self._tail + done:
            total = np.zeros((self.channels, self._tail + done), np.float32)
            weight = np.zeros(self._tail + done, np.float32)
            total[:, : self._tail] = self._total[:, : self._tail]
            weight[: self._tail] = self._weight[: self._tail]
            self._total, self._weight = total, weight
        skip, count = self._owed(done)
        out = np.empty((count, self.channels), np.float32)
        _kernels.overlap_add(
            np.ascontiguousarray(frames), self._window, self._squared, self.hop_length, self._total, self._weight, out, skip
        )
        return out

    def finish(self) -> np.ndarray:
        """Return the samples still owed up to :attr:`limit` (zeros past the last frame)."""
        if self.limit is None:
            raise ParameterError("OverlapAdder.finish needs limit set to the input length")
        weight = self._weight[: self._tail]
        tail = self._total[:, : self._tail] * np.where(
            weight > np.finfo(np.float32).tiny, 1 / np.maximum(weight, np.float32(1e-30)), np.float32(1)
        )
        skip, count = self._owed(self._tail)
        samples = np.ascontiguousarray(tail[:, skip : skip + count].T)
        owed = self.limit - self.emitted
        if owed > 0:
            samples = np.concatenate([samples, np.zeros((owed, self.channels), np.float32)])
            self.emitted += owed
        return samples


def spectrogram_db(audio: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """Power spectral density of mono audio in dB/Hz: Hann frames at half overlap, frames inside the audio only.

    Scaled as matplotlib's ``specgram`` scales it (one-sided, divided by the
    rate and the window's power), so that plots keep their colour limits.
    Framed by numpy, not by :class:`FrameSplitter`'s compiled loops: the
    report's child, which draws it, then loads no compiled code of ours
    (about 50 MiB of its peak), and an excerpt's frames fit in memory.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,)]
        Mono samples.
    sample_rate : int
        Hz.
    n_fft : int
        Frame length (even); the hop is half of it.

    Returns
    -------
    np.ndarray [shape=(n_fft // 2 + 1, frames)]
    """
    samples = np.asarray(audio, np.float32).reshape(-1)
    if not samples.size:
        return np.zeros((n_fft // 2 + 1, 0), np.float32)
    if samples.size < n_fft:  # one frame, zero-padded
        samples = np.pad(samples, (0, n_fft - samples.size))
    window = hann_window(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[:: n_fft // 2] * window
    spectra = scipy.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)
    density = np.square(np.abs(spectra)) / (sample_rate * np.square(window).sum())
    density[:, 1 : n_fft // 2] *= 2
    return 10 * np.log10(np.maximum(density, 1e-30)).T
