"""Put cleaned audio back into its original container, everything else untouched."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from destatic.errors import ParameterError
from destatic.media import _aac_segments, _ffmpeg
from destatic.media.atomic import atomic_output
from destatic.media.audio import first_sample_time, segment_encoded_aac, select_audio_stream
from destatic.media.probe import MediaInfo, StreamInfo, probe

__all__ = ["MUXERS", "choose_audio_codec", "encoder_delay", "remux"]

MUXERS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
    ".mpg": "mpeg", ".mpeg": "mpeg", ".ts": "mpegts",
    ".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".m4a": "ipod", ".ogg": "ogg", ".oga": "ogg", ".opus": "opus",
}

# codec name -> ffmpeg encoder, for every codec destatic can write back.
_ENCODERS = {
    "aac": "aac", "mp3": "libmp3lame", "mp2": "mp2", "vorbis": "libvorbis", "opus": "libopus",
    "ac3": "ac3", "eac3": "eac3", "flac": "flac", "alac": "alac",
    **{pcm: pcm for pcm in ("pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_s16be", "pcm_s24be", "pcm_u8")},
}
_LOSSY = {"aac", "mp3", "mp2", "vorbis", "opus", "ac3", "eac3"}

# Codecs each muxer takes, preferred first: the first is used when the original's cannot be written.
_CONTAINER_CODECS = {
    "mp4": ("aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"),
    "ipod": ("aac", "alac"),
    "mov": ("aac", "mp3", "ac3", "eac3", "alac", "flac", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"),
    "matroska": ("flac", *(_ENCODERS)),
    "webm": ("opus", "vorbis"),
    "avi": ("mp3", "ac3", "mp2", "aac", "pcm_s16le", "pcm_u8"),
    "mpeg": ("mp2", "mp3", "ac3"),
    "mpegts": ("aac", "mp2", "mp3", "ac3", "eac3", "opus"),
    "wav": ("pcm_f32le", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_u8"),
    "flac": ("flac",),
    "mp3": ("mp3",),
    "ogg": ("vorbis", "opus", "flac"),
    "opus": ("opus",),
}

# Constant bitrates (kb/s) the MPEG audio encoders accept.
_MPEG_AUDIO_RATES = {
    "mp3": (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "mp2": (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
}
_MAX_RATE = {"aac": 512_000, "vorbis": 500_000, "opus": 510_000, "ac3": 640_000, "eac3": 640_000}
_DEFAULT_RATE_PER_CHANNEL = 96_000
_PLAYS_PRIMING = {"avi"}
"""Muxers whose streams start at their first packet: a lossy encoder's priming plays there, before the audio."""
_MILLISECOND_MUXERS = {"matroska", "webm"}
"""Muxers that store timestamps in whole milliseconds, and the encoder delay beside them (CodecDelay)."""
_VORBIS_QUALITY = 6  # about 190 kb/s for stereo at 44.1 kHz


def choose_audio_codec(muxer: str, original: StreamInfo, *, requested: str | None = None) -> str:
    """The codec to encode replaced audio in: `requested`, else the original's, else the container's usual one.

    Raises
    ------
    destatic.errors.ParameterError
        `requested` is unknown or the container cannot hold it.
    """
    allowed = _CONTAINER_CODECS[muxer]
    if requested is not None:
        codec = {"libmp3lame": "mp3", "libvorbis": "vorbis", "libopus": "opus"}.get(requested, requested)
        if codec not in _ENCODERS or codec not in allowed:
            raise ParameterError(f"audio_codec={requested!r} cannot be written to {muxer}; use one of {list(allowed)}")
        return codec
    return original.codec if original.codec in allowed and original.codec in _ENCODERS else allowed[0]


def _bitrate(codec: str, original: StreamInfo, requested: int | None) -> int | None:
    """Bits per second for a lossy codec: the request, else no lower than the original's."""
    if codec not in _LOSSY:
        return None
    if requested is not None:
        if not isinstance(requested, int) or requested < 8000:
            raise ParameterError(f"audio_bitrate={requested!r} must be an integer number of bits per second >= 8000")
        wanted = requested
    elif codec == "vorbis" and not original.bitrate:
        return None  # quality-based instead: a fixed rate can be impossible at low sample rates
    else:
        wanted = max(original.bitrate or 0, _DEFAULT_RATE_PER_CHANNEL * min(original.channels or 2, 2))
    if codec in _MPEG_AUDIO_RATES:
        rates = _MPEG_AUDIO_RATES[codec]
        return 1000 * next((r for r in rates if r * 1000 >= wanted), rates[-1])
    return min(wanted, _MAX_RATE.get(codec, wanted))


def _depth_args(codec: str, original: StreamInfo, index: int) -> list[str]:
    """Keep flac's bit depth (its encoder would otherwise take 16 bits from float input)."""
    if codec != "flac":
        return []
    if original.codec == "flac" and original.sample_format == "s16":
        return [f"-sample_fmt:{index}", "s16"]
    return [f"-sample_fmt:{index}", "s32", f"-bits_per_raw_sample:{index}", str(original.bits_per_sample or 24)]


def encoder_delay(encoder: str, wav: os.PathLike[str] | str, stream: StreamInfo) -> int:
    """Samples of priming `encoder` codes before the first sample it is given, as this ffmpeg states it.

    The negated timestamp of the first packet of a 0.1 s encode of `wav`
    (ffmpeg's ``initial_padding``: 481 for mp2, 1105 for LAME's mp3, 256 for
    AC-3, 1024 for AAC); remembered per encoder, sample rate and channel count.
    """
    key = (encoder, stream.sample_rate or 0, stream.channels or 0)
    if key not in _DELAYS:
        args = [
            *_ffmpeg.base_args(), *_ffmpeg.input_args(wav), "-map", f"0:{stream.index}", "-t", "0.1",
            "-c:a", encoder, "-protocol_whitelist", "pipe", "-f", "framecrc", "pipe:1",
        ]
        seconds = _ffmpeg.first_packet_seconds(_ffmpeg.decode_text(_ffmpeg.run(args, source=wav).stdout))
        _DELAYS[key] = max(round(-(seconds or 0.0) * key[1]), 0)
    return _DELAYS[key]


_DELAYS: dict[tuple[str, int, int], int] = {}


def _priming_args(muxer: str, codec: str, wav: os.PathLike[str] | str, cleaned: MediaInfo, index: int) -> list[str]:
    """In a muxer that plays priming (AVI), skip as many samples of the cleaned audio as the encoder primes.

    The timestamps are kept, so the priming takes the place of the skipped
    samples and every later sample plays where it did in the original.
    """
    if muxer not in _PLAYS_PRIMING or codec not in _LOSSY:
        return []
    stream = select_audio_stream(cleaned, None)
    delay = encoder_delay(_ENCODERS[codec], wav, stream)
    if delay <= 0 or (cleaned.duration or 0) * (stream.sample_rate or 0) <= delay:
        return []
    return [f"-filter:{index}", f"atrim=start_sample={delay}"]


def _tick_alignment(muxer: str, codec: str, wav: os.PathLike[str] | str, stream: StreamInfo) -> float:
    """Seconds to move the cleaned audio by in Matroska, where a delay of n + 0.5 ms is rounded up twice.

    Matroska stores the first packet's start (the first sample's time less
    the encoder delay) in whole milliseconds, rounded half away from zero, and
    the decoder skips the delay and adds it back, rounded the same way. The two
    roundings cancel unless the delay ends in exactly half a millisecond, as
    Opus's 312 samples at 48 kHz (6.5 ms) do: then both go up, and the audio
    came back 1 ms late from every remux. Half a millisecond earlier, the packet
    starts on a tick and nothing is rounded.
    """
    if muxer not in _MILLISECOND_MUXERS or codec not in _LOSSY or not stream.sample_rate:
        return 0.0
    delay, rate = encoder_delay(_ENCODERS[codec], wav, stream), stream.sample_rate
    half_milliseconds, remainder = divmod(2000 * delay, rate)
    if delay <= 0 or remainder or half_milliseconds % 2 == 0:
        return 0.0
    return -0.0005


def _video_encoder_args(muxer: str, index: int) -> list[str]:
    if muxer == "webm":
        return [f"-c:{index}", "libvpx-vp9", f"-crf:{index}", "24", f"-b:{index}", "0"]
    if muxer == "mpeg":
        return [f"-c:{index}", "mpeg2video", f"-q:{index}", "2"]
    if muxer == "avi":
        return [f"-c:{index}", "mpeg4", f"-q:{index}", "2"]
    return [f"-c:{index}", "libx264", f"-crf:{index}", "16", f"-preset:{index}", "medium"]


def _timeline_args(start_time: float) -> list[str]:
    """Input arguments that put the original's timestamps on a timeline starting at its container's start.

    ffmpeg would otherwise subtract the start of the streams it reads from
    the file, which is later than the container's start when the replaced
    audio is the first stream (an mp2 or AC-3 stream whose encoder delay
    starts it before the video): every copied stream would move earlier,
    and the cleaned audio, placed at its offset from the container's start,
    would play late against them by the difference.
    """
    return ["-copyts", "-itsoffset", f"{-start_time:.6f}"]


def _timing_args(muxer: str, start_time: float) -> list[str]:
    """MPEG-PS: start where the original started (the muxer would otherwise add 0.5 s of preload)."""
    if muxer != "mpeg":
        return []
    return ["-preload", str(max(round(start_time * 1_000_000), 0))]


def _same_file(a: os.PathLike[str] | str, b: os.PathLike[str] | str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def remux(
    original: os.PathLike[str] | str,
    cleaned_wav: os.PathLike[str] | str,
    output: os.PathLike[str] | str,
    *,
    stream: int | None = None,
    audio_codec: str | None = None,
    audio_bitrate: int | None = None,
    reencode_video: bool = False,
    n_jobs: int | None = None,
    original_info: MediaInfo | None = None,
    offset_s: float | None = None,
) -> Path:
    """Write `original` with one audio stream replaced by `cleaned_wav`, atomically.

    Every other stream (video, other audio tracks, subtitles, data, cover art)
    is copied packet for packet, in the same order, with container metadata,
    stream tags, dispositions and chapters. The cleaned audio's first sample
    plays where the replaced stream's first sample played (see
    :func:`destatic.media.first_sample_time`; the new encoder's priming is accounted for), so
    A/V sync is kept to the sample in most containers and to the millisecond
    in Matroska. It is encoded in the
    original's codec when the container takes it and destatic can encode it
    (else the container's usual codec: aac in mp4/mov, opus in webm, mp2 in
    mpg, mp3 in avi, flac in mkv), at a bitrate no lower than the original's.

    Parameters
    ----------
    original : path-like
        The source video or audio file.
    cleaned_wav : path-like
        The replacement audio, at the replaced stream's sample rate and channel
        count, starting at its first sample (as :func:`extract_audio` wrote it).
    output : path-like
        Destination; its suffix picks the container (normally `original`'s).
    stream : int or None
        Index in `original` of the audio stream to replace; None: the default one.
    audio_codec : str or None
        Force this audio codec (``"aac"``, ``"opus"``, ``"flac"``...); None chooses as above.
    audio_bitrate : int or None
        Bits per second for a lossy codec; None: the original's, at least 96 kb/s
        per channel (Vorbis of unknown bitrate: quality 6, about 190 kb/s stereo).
    reencode_video : bool
        Re-encode video streams (near-transparent quality) instead of copying them.
        Off by default: copying is lossless and fast.
    n_jobs : int or None
        AAC encoders to run at once on long audio into mp4, mov, m4a or ts,
        each on a segment, spliced gaplessly at frames where they agree (see
        :mod:`destatic.media._aac_segments`). None: one per usable CPU (at most
        4) when every segment gets 20 s or more; 1: one encoder.
    original_info : MediaInfo or None
        :func:`probe` of `original`, when the caller has it already (as
        :attr:`AudioTrack.source`); None probes it here.
    offset_s : float or None
        Where the replaced stream's first sample plays, seconds after the
        container's start, when the caller knows it (as :attr:`AudioTrack.offset`);
        None reads it from `original` (:func:`destatic.media.first_sample_time`).

    Returns
    -------
    Path
        `output`.

    Raises
    ------
    destatic.errors.ParameterError
        `output` is `original`, has an unsupported suffix, `audio_codec` does not fit,
        or `n_jobs` is not None or a positive integer.
    destatic.errors.BadInputError
        `original` or `cleaned_wav` cannot be read, or `original` has no audio.
    destatic.errors.TransientError
        ffmpeg killed, disk full or another I/O error.
    """
    output = Path(output)
    if _same_file(original, output):
        raise ParameterError(f"output={os.fsdecode(output)!r} is the original file; inputs are never overwritten")
    muxer = MUXERS.get(output.suffix.lower())
    if muxer is None:
        raise ParameterError(f"output suffix {output.suffix!r} is not supported; use one of {sorted(MUXERS)}")
    _aac_segments.check_n_jobs(n_jobs)
    info = original_info if original_info is not None else probe(original)
    replaced = select_audio_stream(info, stream)
    cleaned = probe(cleaned_wav)
    cleaned_audio = select_audio_stream(cleaned, None)
    codec = choose_audio_codec(muxer, replaced, requested=audio_codec)
    bitrate = _bitrate(codec, replaced, audio_bitrate)
    offset = offset_s if offset_s is not None else first_sample_time(original, replaced) - info.start_time

    aac = (
        segment_encoded_aac(cleaned_wav, cleaned, cleaned_audio, output, muxer=muxer, bitrate=bitrate, n_jobs=n_jobs)
        if codec == "aac" and bitrate is not None
        else contextlib.nullcontext(None)
    )
    with aac as spliced:
        maps: list[str] = []
        codecs: list[str] = ["-c", "copy"]
        for out_index, source in enumerate(info.streams):
            if source.index == replaced.index:
                if spliced is not None:
                    maps += ["-map", "1:0"]
                    codecs += spliced.timestamp_args(out_index, offset=offset)
                else:
                    maps += ["-map", f"1:{cleaned_audio.index}"]
                    codecs += [f"-c:{out_index}", _ENCODERS[codec], *_depth_args(codec, source, out_index)]
                    codecs += _priming_args(muxer, codec, cleaned_wav, cleaned, out_index)
                    if bitrate is not None:
                        codecs += [f"-b:{out_index}", str(bitrate)]
                    elif codec == "vorbis":
                        codecs += [f"-q:{out_index}", str(_VORBIS_QUALITY)]
                flags = "+".join(flag.replace(" ", "_") for flag in source.dispositions) or "0"
                codecs += [f"-disposition:{out_index}", flags]
            else:
                maps += ["-map", f"0:{source.index}"]
                if reencode_video and source.kind == "video" and not source.attached_pic:
                    codecs += _video_encoder_args(muxer, out_index)
            # An explicit per-stream mapping turns off ffmpeg's automatic one, so map every stream's tags.
            codecs += [f"-map_metadata:s:{out_index}", f"0:s:{source.index}"]
        if spliced is not None:
            audio_input = _ffmpeg.input_args(spliced.path)
        else:
            start = offset + _tick_alignment(muxer, codec, cleaned_wav, cleaned_audio)
            audio_input = ["-itsoffset", f"{start:.9f}", *_ffmpeg.input_args(cleaned_wav)]
        with atomic_output(output) as partial:
            args = [
                *_ffmpeg.base_args(),
                *_timeline_args(info.start_time),
                *_ffmpeg.input_args(original),
                *audio_input,
                *maps,
                "-map_metadata", "0", "-map_chapters", "0",
                *codecs,
                "-max_muxing_queue_size", "4096",
                *_timing_args(muxer, info.start_time),
                *_ffmpeg.output_args(partial, muxer=muxer),
            ]
            _ffmpeg.run(args, source=original)
    return output
