"""What each step hands the next: small frozen records naming its artifact and what the next step needs.

A record names one file in the file's work folder (its name holds the step's
cache key) and carries what was learned while writing it, so that no later
step reads a header, loads a profile or probes the source again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only named in annotations: a record can be read without loading the DSP core
    from destatic.dsp import NoiseProfile
    from destatic.media import Loudness, MediaInfo

__all__ = ["AudioFile", "Encoded", "ExtractedAudio", "Gains", "Leveled", "Plots", "ProfiledNoise"]


@dataclass(frozen=True)
class AudioFile:
    """A float32 WAV the pipeline wrote: extracted audio or cleaned audio.

    Attributes
    ----------
    path : Path
    sample_rate : int
        Hz.
    channels : int
    frames : int
        Samples per channel.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class ExtractedAudio(AudioFile):
    """The audio of an input, as the extract step decoded it.

    Attributes
    ----------
    source : MediaInfo
        The probe of the input: its streams (for the report) and container
        (for the remux).
    stream : int
        Index of the audio stream decoded.
    offset : float
        Seconds between the container's start and the stream's (A/V sync).
    """

    source: MediaInfo
    stream: int
    offset: float


@dataclass(frozen=True)
class Leveled(AudioFile):
    """The cleaned audio brought to a loudness by the loudness step (one gain for the whole file).

    Attributes
    ----------
    target_lufs, ceiling_dbtp : float
        What was asked: the integrated loudness, and the true peak not to pass.
    gain_db : float
        The gain applied.
    peak_limited : bool
        The ceiling, not the target, set the gain (the result is quieter than asked).
    original, before, after : Loudness
        The input as it came, the cleaned audio, and the result.
    """

    target_lufs: float
    ceiling_dbtp: float
    gain_db: float
    peak_limited: bool
    original: Loudness
    before: Loudness
    after: Loudness


@dataclass(frozen=True)
class ProfiledNoise:
    """The noise profile the profile step measured (``profile-<key>.npz``), loaded."""

    path: Path
    profile: NoiseProfile


@dataclass(frozen=True)
class Gains:
    """The gains file the subtract step wrote (``subtract-<key>.npy``, :mod:`destatic.dsp.gain_file`).

    Attributes
    ----------
    shape : tuple of int
        ``(channels, frames, bins)``.
    dtype : str
        ``"float16"`` or ``"float32"``.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: str


@dataclass(frozen=True)
class Encoded:
    """A finished output file in the work folder: the remuxed container or the exported audio."""

    path: Path


@dataclass(frozen=True)
class Plots:
    """The report step's pictures, figures and excerpts (``plots-<key>.json``, the files beside it).

    Attributes
    ----------
    profile_png, spectrogram_png : Path
        Full-size plots.
    profile_uri, spectrogram_uri : str
        Small copies as ``data:`` URIs, for the markdown artifact.
    reduction_db : float or None
        Estimated noise reduction (None: the input is too short or silent).
    excerpt : tuple of float
        ``(start, end)``, seconds: the stretch the listening report plays and the spectrograms show.
    before_excerpt, after_excerpt : Path or None
        That stretch before and after cleaning, 16-bit mono FLAC.
    before_clip, after_clip : Path or None
        Video inputs: small MP4 previews of the stretch with either sound.
    clip_note : str or None
        Why a video input has no previews.
    quality : dict or None
        Speech quality of the input and output (:func:`destatic.steps.quality.score_voice`).
    """

    path: Path
    profile_png: Path
    spectrogram_png: Path
    profile_uri: str
    spectrogram_uri: str
    reduction_db: float | None
    excerpt: tuple[float, float] = (0.0, 0.0)
    before_excerpt: Path | None = None
    after_excerpt: Path | None = None
    before_clip: Path | None = None
    after_clip: Path | None = None
    clip_note: str | None = None
    quality: dict[str, Any] | None = None
