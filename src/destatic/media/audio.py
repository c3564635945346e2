"""Audio in and out: decode one stream to a float WAV, encode cleaned audio alone."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from destatic.errors import BadInputError, ParameterError, UncleanableAudioError
from destatic.media import _aac_segments, _ffmpeg
from destatic.media.atomic import atomic_output
from destatic.media.formats import AUDIO_FORMATS, AUDIO_SUFFIXES
from destatic.media.probe import MediaInfo, StreamInfo, probe

__all__ = [
    "AudioTrack",
    "export_audio",
    "extract_audio",
    "first_sample_time",
    "float_wav_writer",
    "read_audio",
    "select_audio_stream",
    "wav_blocks",
    "wav_info",
]

READ_BLOCK = 1 << 16
"""Samples per channel in each block :func:`wav_blocks` reads."""

EXTRACT_FRAME_SAMPLES = 16384
"""Samples per frame ffmpeg passes from the decoder to the WAV writer when extracting."""

GAP_FILL_S = 0.1
"""Extraction fills a gap in the audio's timestamps longer than this (s) with silence, and drops
audio that overlaps the previous by as much. Shorter differences are left alone: Vorbis in Matroska
has frames whose millisecond timestamps stray from their samples by up to 10 ms, either way."""


@dataclass(frozen=True)
class AudioTrack:
    """A decoded audio stream written as a float32 WAV by :func:`extract_audio`.

    Attributes
    ----------
    path : Path
        The WAV file (RF64 when over 4 GiB).
    sample_rate : int
        Hz, the stream's native rate.
    channels : int
        The stream's native channel count.
    frames : int
        Samples per channel, exactly as decoded.
    start_time : float
        Seconds on the container's timeline at which the WAV's first sample
        plays (see :func:`first_sample_time`); the WAV itself has no timestamps.
    offset : float
        ``start_time`` minus the container's start: where the audio sits
        relative to the file's first timestamp, which is what A/V sync needs.
    codec : str
        The source stream's codec, e.g. ``"aac"``.
    stream : int
        The source stream's index in its file.
    source : MediaInfo
        What :func:`probe` found in the file, for the steps after (remux,
        reports) so that none of them probes it again.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    start_time: float
    offset: float
    codec: str
    stream: int
    source: MediaInfo

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate


def select_audio_stream(info: MediaInfo, stream: int | None) -> StreamInfo:
    """The audio stream to work on: `stream` (a file stream index) or the default one.

    Raises
    ------
    destatic.errors.BadInputError
        The file has no audio stream.
    destatic.errors.ParameterError
        `stream` is not the index of an audio stream of the file.
    """
    audio = info.audio_streams
    if not audio:
        kinds = ", ".join(s.kind for s in info.streams) or "no streams"
        raise BadInputError(info.path, f"has no audio stream (streams: {kinds})")
    if stream is None:
        chosen = info.default_audio_stream
        assert chosen is not None
        return chosen
    for candidate in audio:
        if candidate.index == stream:
            return candidate
    allowed = ", ".join(str(s.index) for s in audio)
    raise ParameterError(f"stream={stream!r} is not an audio stream of {info.path.name!r}; its audio streams are {allowed}")


def extract_audio(path: os.PathLike[str] | str, dest_wav: os.PathLike[str] | str, *, stream: int | None = None) -> AudioTrack:
    """Decode one audio stream of `path` to a float32 WAV at its native rate and channel count.

    No resampling, no mixing: the WAV holds exactly the samples the decoder
    produces (container edit lists and encoder priming applied, as any player
    would), laid on the stream's timeline: where its timestamps leave a gap of
    more than :data:`GAP_FILL_S` (a first packet that lasts 0.18 s instead of
    0.02, dropped packets), silence fills it, and where they overlap by as
    much, the overlap is dropped, so that every sample is where a player plays
    it. When the first sample plays is returned, not written, so that
    :func:`destatic.media.remux` can put the cleaned audio back in sync.
    `dest_wav` is written atomically.

    Parameters
    ----------
    path : path-like
        A video or audio file.
    dest_wav : path-like
        Where to write the WAV (RF64 when larger than 4 GiB).
    stream : int or None
        Index of the audio stream in the file (:attr:`StreamInfo.index`);
        None takes the default audio stream.

    Returns
    -------
    AudioTrack

    Raises
    ------
    destatic.errors.BadInputError
        Not media, corrupt or truncated, no audio stream, empty audio, unsupported codec.
    destatic.errors.ParameterError
        `stream` is not an audio stream of the file.
    destatic.errors.TransientError
        ffmpeg killed, disk full or another I/O error.
    """
    info = probe(path)
    chosen = select_audio_stream(info, stream)
    with atomic_output(dest_wav) as partial:
        args = [
            *_ffmpeg.base_args(loglevel="warning"),
            "-copyts",  # the first frame's timestamp as the file has it; the WAV has none
            *_ffmpeg.input_args(path),
            "-map", f"0:{chosen.index}",
            "-map_metadata", "-1", "-map_chapters", "-1",
            # Fill timestamp gaps (never stretch: async=1 pads and trims only). ffmpeg's
            # threads hand over every frame: 1024-sample frames made half of an
            # extraction's CPU time system time. Same bytes.
            "-af", f"aresample=async=1:min_hard_comp={GAP_FILL_S},asetnsamples=n={EXTRACT_FRAME_SAMPLES}:p=0",
            "-c:a", "pcm_f32le", "-rf64", "auto",
            *_ffmpeg.output_args(partial, muxer="wav"),
            *_first_frame_output(chosen.index),
        ]
        done = _ffmpeg.run(args, source=path)
        _reject_partial_decode(_ffmpeg.decode_text(done.stderr), path)
        decoded = wav_info(partial)
        if decoded.frames == 0:
            raise BadInputError(path, f"audio stream {chosen.index} decodes to no samples (empty audio)")
    start_time = _first_frame_time(done.stdout, chosen)
    return AudioTrack(
        path=Path(dest_wav),
        sample_rate=decoded.samplerate,
        channels=decoded.channels,
        frames=decoded.frames,
        start_time=start_time,
        offset=start_time - info.start_time,
        codec=chosen.codec,
        stream=chosen.index,
        source=info,
    )


def first_sample_time(path: os.PathLike[str] | str, stream: StreamInfo) -> float:
    """Seconds on `path`'s timeline at which the first decoded sample of `stream` plays.

    The timestamp of the decoder's first frame, with the file's timestamps
    kept as they are (``-copyts``): after edit lists, encoder priming and Opus
    pre-skip, that is where the samples :func:`extract_audio` writes begin
    (which reads it in the same way, as it decodes). It can differ from
    :attr:`StreamInfo.start_time`, the first packet's timestamp (an Opus
    stream in mp4 starts its 312 samples of pre-skip earlier). Falls back to
    that when the frame has no timestamp.

    Parameters
    ----------
    path : path-like
        A video or audio file.
    stream : StreamInfo
        One of its audio streams.

    Returns
    -------
    float
        Seconds, on the same timeline as :attr:`MediaInfo.start_time`.

    Raises
    ------
    destatic.errors.BadInputError
        ffmpeg cannot decode the stream.
    destatic.errors.TransientError
        ffmpeg killed or an I/O error.
    """
    args = [*_ffmpeg.base_args(), "-copyts", *_ffmpeg.input_args(path), *_first_frame_output(stream.index)]
    return _first_frame_time(_ffmpeg.run(args, source=path).stdout, stream)


def _first_frame_output(index: int) -> list[str]:
    """Output arguments that write the first decoded frame of stream `index`, timestamp and all, as text to stdout."""
    return [
        "-map", f"0:{index}", "-frames:a", "1", "-c:a", "pcm_f32le",
        "-protocol_whitelist", "pipe", "-f", "framecrc", "pipe:1",
    ]


def _first_frame_time(stdout: bytes, stream: StreamInfo) -> float:
    seconds = _ffmpeg.first_packet_seconds(_ffmpeg.decode_text(stdout))
    return stream.start_time if seconds is None else seconds


def wav_info(path: os.PathLike[str] | str) -> sf._SoundFileInfo:
    """soundfile's header info, opened through Python so that names with any bytes work."""
    with open(path, "rb") as handle:
        return sf.info(handle)


def wav_blocks(path: os.PathLike[str] | str, channels: slice = slice(None)) -> Iterator[np.ndarray]:
    """Blocks of a WAV as float32 (frames, channels) of :data:`READ_BLOCK` samples, only the columns `channels`."""
    with sf.SoundFile(path) as handle:
        for block in handle.blocks(blocksize=READ_BLOCK, dtype="float32", always_2d=True):
            yield block[:, channels]


_SFC_SET_ADD_PEAK_CHUNK = 0x1050
"""libsndfile's command that turns a float WAV's PEAK chunk on or off (sndfile.h)."""


def float_wav_writer(path: os.PathLike[str] | str, sample_rate: int, channels: int) -> sf.SoundFile:
    """Open `path` to write a 32-bit float WAV, without libsndfile's PEAK chunk.

    The PEAK chunk (each channel's largest sample) is read by nothing here and
    costs a pass over every block written: about a third of the writing time.

    Parameters
    ----------
    path : path-like
        The file to create (the caller's partial file: see :func:`~destatic.media.atomic.atomic_output`).
    sample_rate, channels : int
        Of the audio to write.

    Returns
    -------
    soundfile.SoundFile
        Open for writing; a context manager.
    """
    handle = sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="FLOAT", format="WAV")
    with contextlib.suppress(AttributeError):  # soundfile has no wrapper for the command: a release without these names keeps the chunk
        sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
    return handle


def wav_clip(path: os.PathLike[str] | str, start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` of a WAV as float32 ``(frames, channels)``, read by seeking."""
    return sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)[0]


def segment_encoded_aac(
    cleaned_wav: os.PathLike[str] | str,
    cleaned: MediaInfo,
    stream: StreamInfo,
    beside: os.PathLike[str] | str,
    *,
    muxer: str,
    bitrate: int,
    n_jobs: int | None,
) -> contextlib.AbstractContextManager[_aac_segments.SplicedAAC | None]:
    """:func:`~destatic.media._aac_segments.parallel_aac` of `cleaned_wav` when it is a PCM WAV, else None.

    The encoders seek the WAV to the sample, so only PCM in a WAV container is split.
    """
    if cleaned.format_name != "wav" or not stream.codec.startswith("pcm_"):
        return contextlib.nullcontext(None)
    return _aac_segments.parallel_aac(
        cleaned_wav, beside, muxer=muxer, frames=wav_info(cleaned_wav).frames,
        sample_rate=stream.sample_rate or 0, channels=stream.channels or 0, bitrate=bitrate, n_jobs=n_jobs,
    )


_TRUNCATION_MARKERS = ("partial file", "File ended prematurely", "Packet corrupt", "corrupt input packet")


def _reject_partial_decode(stderr: str, path: os.PathLike[str] | str) -> None:
    """Raise if ffmpeg warned that the file ends early or holds corrupt packets."""
    for line in stderr.splitlines():
        if any(marker in line for marker in _TRUNCATION_MARKERS):
            raise BadInputError(path, f"truncated or corrupt ({_ffmpeg.strip_context(line)[:200]})")


def read_audio(path: os.PathLike[str] | str, *, stream: int | None = None) -> tuple[np.ndarray, int]:
    """Decode one audio stream of `path` into memory.

    A convenience over :func:`extract_audio` (through a temporary WAV) for
    short files and tests; the pipeline streams WAV files instead.

    Parameters
    ----------
    path : path-like
        A video or audio file.
    stream : int or None
        Audio stream index in the file; None takes the default one.

    Returns
    -------
    audio : np.ndarray [shape=(frames, channels), dtype=float32]
    sample_rate : int
        Hz.
    """
    with tempfile.TemporaryDirectory(prefix="destatic-read-") as scratch:
        track = extract_audio(path, Path(scratch) / "audio.wav", stream=stream)
        with open(track.path, "rb") as handle:
            audio, sample_rate = sf.read(handle, dtype="float32", always_2d=True)
    return audio, int(sample_rate)


_LOSSY_DEFAULT_BITRATE = {"mp3": 192_000, "m4a": 192_000, "opus": 160_000}


def _export_codec_args(format: str, *, bit_depth: int | None, bitrate: int | None, channels: int) -> tuple[list[str], str]:
    """Encoder arguments and muxer for an audio-only export."""
    lossless = format in ("wav", "flac")
    if lossless and bitrate is not None:
        raise ParameterError(f"bitrate={bitrate!r} applies to lossy formats only; {format} is lossless")
    if not lossless and bit_depth is not None:
        raise ParameterError(f"bit_depth={bit_depth!r} applies to wav and flac only, not {format}")
    if bitrate is not None and (not isinstance(bitrate, int) or bitrate < 8000):
        raise ParameterError(f"bitrate={bitrate!r} must be an integer number of bits per second >= 8000")
    if format == "wav":
        codecs = {None: "pcm_f32le", 32: "pcm_f32le", 24: "pcm_s24le", 16: "pcm_s16le"}
        if bit_depth not in codecs:
            raise ParameterError(f"bit_depth={bit_depth!r} for wav must be 16, 24 or 32 (float)")
        return ["-c:a", codecs[bit_depth], "-rf64", "auto"], "wav"
    if format == "flac":
        if bit_depth in (None, 24):
            return ["-c:a", "flac", "-sample_fmt", "s32", "-bits_per_raw_sample", "24"], "flac"
        if bit_depth == 16:
            return ["-c:a", "flac", "-sample_fmt", "s16"], "flac"
        raise ParameterError(f"bit_depth={bit_depth!r} for flac must be 16 or 24")
    rate = str(bitrate or _LOSSY_DEFAULT_BITRATE.get(format, 0))
    if format == "mp3":
        if channels > 2:
            raise UncleanableAudioError(f"mp3 holds at most 2 channels; this audio has {channels}: export flac, m4a or opus")
        return ["-c:a", "libmp3lame", "-b:a", rate], "mp3"
    if format == "m4a":
        return ["-c:a", "aac", "-b:a", rate], "ipod"
    if format == "ogg":
        # Vorbis quality 6 (~190 kb/s stereo at 44.1 kHz) adapts to any rate; a fixed bitrate can be impossible (8 kHz).
        return ["-c:a", "libvorbis", *(["-b:a", str(bitrate)] if bitrate else ["-q:a", "6"])], "ogg"
    return ["-c:a", "libopus", "-b:a", rate], "opus"


def export_audio(
    cleaned_wav: os.PathLike[str] | str,
    output: os.PathLike[str] | str,
    *,
    format: str | None = None,
    bit_depth: int | None = None,
    bitrate: int | None = None,
    n_jobs: int | None = None,
) -> Path:
    """Encode audio alone into a file of the chosen format, atomically.

    Lossless by default: wav stays float32 and flac stores 24-bit integers.
    Lossy formats default to transparent settings: 192 kb/s mp3 and aac,
    Vorbis quality 6 (about 190 kb/s for stereo at 44.1 kHz), 160 kb/s opus
    (resampled to 48 kHz, as Opus requires).

    Parameters
    ----------
    cleaned_wav : path-like
        The audio to encode (any format ffmpeg reads; normally a float32 WAV).
    output : path-like
        Destination file.
    format : {"wav", "flac", "mp3", "m4a", "ogg", "opus"} or None
        None derives it from `output`'s suffix.
    bit_depth : {16, 24, 32} or None
        wav: 16/24-bit PCM or 32-bit float (None); flac: 16 or 24 (None).
    bitrate : int or None
        Bits per second for mp3, m4a, ogg and opus; None takes the default above.
    n_jobs : int or None
        m4a from a WAV: AAC encoders to run at once, each on a segment, spliced
        gaplessly (see :func:`destatic.media.remux`). None: one per usable CPU
        (at most 4) when every segment gets 20 s or more; 1: one encoder.

    Returns
    -------
    Path
        `output`.

    Raises
    ------
    destatic.errors.ParameterError
        Unknown format, an option the format does not take, or `n_jobs` not None or a positive integer.
    destatic.errors.BadInputError
        `cleaned_wav` is missing or not audio.
    destatic.errors.TransientError
        ffmpeg killed, disk full or another I/O error.
    """
    output = Path(output)
    if format is None:
        if output.suffix.lower() not in AUDIO_SUFFIXES:
            raise ParameterError(f"cannot derive a format from output suffix {output.suffix!r}; use one of {sorted(AUDIO_SUFFIXES)} or pass format=")
        format = AUDIO_SUFFIXES[output.suffix.lower()]
    format = format.lower().lstrip(".")
    if format not in AUDIO_FORMATS:
        raise ParameterError(f"format={format!r} is not supported; use one of {sorted(AUDIO_FORMATS)}")
    _aac_segments.check_n_jobs(n_jobs)
    info = probe(cleaned_wav)
    source = select_audio_stream(info, None)
    codec_args, muxer = _export_codec_args(format, bit_depth=bit_depth, bitrate=bitrate, channels=source.channels or 1)
    aac = (
        segment_encoded_aac(cleaned_wav, info, source, output, muxer=muxer, bitrate=bitrate or _LOSSY_DEFAULT_BITRATE["m4a"], n_jobs=n_jobs)
        if format == "m4a"
        else contextlib.nullcontext(None)
    )
    with aac as spliced:
        if spliced is not None:
            inputs, codec_args = _ffmpeg.input_args(spliced.path), ["-c:a", "copy", *spliced.timestamp_args(0)]
        else:
            inputs = _ffmpeg.input_args(cleaned_wav)
        with atomic_output(output) as partial:
            args = [
                *_ffmpeg.base_args(),
                *inputs,
                "-map", "0:0" if spliced is not None else f"0:{source.index}",
                "-map_metadata", "-1",
                *codec_args,
                *_ffmpeg.output_args(partial, muxer=muxer),
            ]
            _ffmpeg.run(args, source=cleaned_wav)
    return output
