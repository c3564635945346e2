"""What a media file holds: container, streams, codecs, timing and tags.

There is no ffprobe beside imageio-ffmpeg's binary, so :func:`probe` parses the
report ``ffmpeg -i`` prints for its input. That is the same code (libavformat's
``av_dump_format``) that ffprobe's stream list comes from, read by the binary
that will later do the work, so probe and processing cannot disagree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from destatic.errors import BadInputError
from destatic.media import _ffmpeg

StreamKind = Literal["video", "audio", "subtitle", "data", "attachment"]

__all__ = ["MediaInfo", "StreamInfo", "StreamKind", "probe"]


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a media file, as ffmpeg sees it.

    Attributes
    ----------
    index : int
        Position in the file, as in ffmpeg's ``-map 0:index``.
    kind : {"video", "audio", "subtitle", "data", "attachment"}
    codec : str
        ffmpeg codec name, e.g. ``"aac"``, ``"h264"``, ``"pcm_s16le"``.
    start_time : float
        First timestamp in seconds (0.0 when ffmpeg reports none).
    duration : float or None
        Seconds, when the container states it per stream (Matroska ``DURATION`` tag).
    bitrate : int or None
        Bits per second, when known.
    sample_rate, channels : int or None
        Audio only. ``channels`` counts the channels of ``channel_layout``.
    channel_layout : str or None
        Audio only, ffmpeg's layout name (``"stereo"``, ``"5.1(side)"``...).
    sample_format : str or None
        Audio only, the decoder's sample format (``"fltp"``, ``"s16"``, ``"s32"``...).
    bits_per_sample : int or None
        Audio only, significant bits when ffmpeg states them (``"s32 (24 bit)"`` -> 24).
    width, height : int or None
        Video only, pixels.
    fps : float or None
        Video only, nominal frame rate.
    language : str or None
        ISO 639 code from the container, if any.
    default, attached_pic : bool
        Disposition flags: default track of its kind; cover art stored as a video stream.
    dispositions : tuple of str
        Every disposition flag ffmpeg printed (``"default"``, ``"forced"``, ``"attached pic"``...).
    tags : dict of str to str
        Stream metadata.
    """

    index: int
    kind: StreamKind
    codec: str
    start_time: float = 0.0
    duration: float | None = None
    bitrate: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    channel_layout: str | None = None
    sample_format: str | None = None
    bits_per_sample: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    language: str | None = None
    dispositions: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def default(self) -> bool:
        """True if the container marks this stream as the default of its kind."""
        return "default" in self.dispositions

    @property
    def attached_pic(self) -> bool:
        """True for cover art (a still picture stored as a video stream)."""
        return "attached pic" in self.dispositions


@dataclass(frozen=True)
class MediaInfo:
    """Everything :func:`probe` learned about a file.

    Attributes
    ----------
    path : Path
        The file probed.
    format_name : str
        ffmpeg demuxer names, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"``, ``"wav"``.
    duration : float or None
        Seconds (ffmpeg prints it to 10 ms), None if unknown.
    start_time : float
        Earliest stream start, seconds.
    bitrate : int or None
        Overall bits per second.
    streams : list of StreamInfo
        In index order (ffmpeg may print them in another order, e.g. a timecode track under its video).
    tags : dict of str to str
        Container metadata.
    chapters : int
        Number of chapters.
    """

    path: Path
    format_name: str
    duration: float | None
    start_time: float
    bitrate: int | None
    streams: list[StreamInfo]
    tags: dict[str, str] = field(default_factory=dict)
    chapters: int = 0

    @property
    def audio_streams(self) -> list[StreamInfo]:
        """Audio streams, in file order."""
        return [s for s in self.streams if s.kind == "audio"]

    @property
    def video_streams(self) -> list[StreamInfo]:
        """Video streams that are real video (cover art excluded), in file order."""
        return [s for s in self.streams if s.kind == "video" and not s.attached_pic]

    @property
    def has_video(self) -> bool:
        """True if the file has moving pictures (cover art alone does not count)."""
        return bool(self.video_streams)

    @property
    def default_audio_stream(self) -> StreamInfo | None:
        """The audio stream flagged default, else the first audio stream, else None."""
        audio = self.audio_streams
        return next((s for s in audio if s.default), audio[0] if audio else None)


_INPUT = re.compile(r"^Input #0, (\S+), from '")
_DURATION = re.compile(r"^\s*Duration: (N/A|(\d+):(\d\d):(\d\d(?:\.\d+)?))(?:, start: (-?\d+(?:\.\d+)?))?(?:, bitrate: (\d+) kb/s)?")
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[0x[0-9a-fA-F]+\])?(?:\(([^)]*)\))?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_CHAPTER = re.compile(r"^\s*Chapter #0:\d+:")
_TAG = re.compile(r"^(\s*)([^:]*?)\s*: (.*)$")
_DISPOSITIONS = (
    "default", "dub", "original", "comment", "lyrics", "karaoke", "forced", "hearing impaired",
    "visual impaired", "clean effects", "attached pic", "timed thumbnails", "non diegetic",
    "captions", "descriptions", "metadata", "dependent", "still image", "multilayer",
)
_FLAGS = re.compile(r"((?:\s*\((?:" + "|".join(_DISPOSITIONS) + r")\))+)\s*$")


def _split_fields(text: str) -> list[str]:
    """Split ``"h264 (High) (avc1 / 0x...), yuv420p(tv, bt709), 640x360"`` on top-level commas."""
    fields, depth, current = [], 0, []
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return [f for f in fields if f]


def _channels_of(layout: str) -> int | None:
    if layout in ("mono", "stereo"):
        return 1 if layout == "mono" else 2
    counted = re.fullmatch(r"(\d+) channels(?: \(.*\))?", layout)
    if counted:
        return int(counted.group(1))
    known = _ffmpeg.channel_layouts()
    if layout in known:
        return known[layout]
    ambisonic = re.fullmatch(r"ambisonic (\d+)(?:\+.*)?", layout)
    if ambisonic:
        return (int(ambisonic.group(1)) + 1) ** 2
    return None


def _parse_duration_tag(value: str | None) -> float | None:
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", (value or "").strip())
    if not match:
        return None
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))


def _parse_stream(match: re.Match[str]) -> dict:
    index, language, kind, rest = int(match.group(1)), match.group(2), match.group(3).lower(), match.group(4)
    flags = _FLAGS.search(rest)
    dispositions: tuple[str, ...] = ()
    if flags:
        dispositions = tuple(re.findall(r"\(([a-z ]+)\)", flags.group(1)))
        rest = rest[: flags.start()]
    fields = _split_fields(rest)
    head = fields[0] if fields else ""
    stream: dict = {
        "index": index,
        "kind": kind,
        "codec": head.split(" ", 1)[0] if head else "none",
        "language": language if language and language != "und" else None,
        "dispositions": dispositions,
    }
    for item in fields[1:]:
        if m := re.fullmatch(r"(\d+) Hz", item):
            stream["sample_rate"] = int(m.group(1))
        elif m := re.fullmatch(r"(\d+) kb/s", item):
            stream["bitrate"] = int(m.group(1)) * 1000
        elif m := re.fullmatch(r"start (-?\d+(?:\.\d+)?)", item):
            stream["start_time"] = float(m.group(1))
        elif m := re.fullmatch(r"(\d+(?:\.\d+)?)(k?) fps", item):
            stream["fps"] = float(m.group(1)) * (1000 if m.group(2) else 1)
        elif kind == "video" and (m := re.match(r"(\d+)x(\d+)\b", item)):
            stream["width"], stream["height"] = int(m.group(1)), int(m.group(2))
        elif kind == "audio" and "sample_rate" in stream and "channel_layout" not in stream:
            stream["channel_layout"] = item
            stream["channels"] = _channels_of(item)
        elif kind == "audio" and "channel_layout" in stream and "sample_format" not in stream:
            m = re.fullmatch(r"([a-z0-9]+)(?: \((\d+) bit\))?", item)
            if m:
                stream["sample_format"] = m.group(1)
                stream["bits_per_sample"] = int(m.group(2)) if m.group(2) else None
    return stream


def parse_report(text: str, path: Path) -> MediaInfo:
    """Build a :class:`MediaInfo` from the text ``ffmpeg -i`` printed for input #0."""
    format_name = None
    header: dict = {"duration": None, "start_time": None, "bitrate": None}
    global_tags: dict[str, str] = {}
    streams: list[dict] = []
    chapters = 0
    tags: dict[str, str] | None = None
    tags_indent = -1
    last_key: str | None = None
    section = "input"
    for line in text.splitlines():
        if format_name is None:
            if m := _INPUT.match(line):
                format_name = m.group(1)
            continue
        if re.match(r"^(Input|Output) #[1-9]|^Output #0|^Stream mapping", line):
            break
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if tags is not None and indent > tags_indent and (m := _TAG.match(line)):
            key, value = m.group(2), m.group(3)
            if key == "" and last_key is not None:
                tags[last_key] += "\n" + value
            elif key:
                tags[key] = value
                last_key = key
            continue
        tags = None
        if stripped == "Metadata:":
            tags_indent = indent
            last_key = None
            if indent <= 2:
                tags = global_tags
            elif section == "stream":
                tags = streams[-1].setdefault("tags", {})
            else:
                tags = {}
        elif m := _DURATION.match(line):
            if m.group(2):
                header["duration"] = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
            if m.group(5):
                header["start_time"] = float(m.group(5))
            if m.group(6):
                header["bitrate"] = int(m.group(6)) * 1000
        elif m := _STREAM.match(line):
            if any(s["index"] == int(m.group(1)) for s in streams):
                section = "repeat"  # listed again under another program: keep the first listing
            else:
                streams.append(_parse_stream(m))
                section = "stream"
        elif _CHAPTER.match(line):
            chapters += 1
            section = "chapter"
        elif stripped.startswith("Program "):
            section = "program"
    if format_name is None:
        raise BadInputError(path, "ffmpeg printed no stream list for it")
    infos = []
    for stream in sorted(streams, key=lambda s: s["index"]):
        stream_tags = stream.get("tags", {})
        duration = _parse_duration_tag(next((v for k, v in stream_tags.items() if k.upper() == "DURATION"), None))
        infos.append(StreamInfo(**{**stream, "duration": duration}))
    starts = [s.start_time for s in infos]
    start_time = header["start_time"] if header["start_time"] is not None else (min(starts) if starts else 0.0)
    return MediaInfo(
        path=path,
        format_name=format_name,
        duration=header["duration"],
        start_time=start_time,
        bitrate=header["bitrate"],
        streams=infos,
        tags=global_tags,
        chapters=chapters,
    )


def probe(path: os.PathLike[str] | str) -> MediaInfo:
    """Read the container, streams, codecs, timing and tags of a media file.

    Only the file's header is read: fast on any size. Metadata that is not
    UTF-8 is read as Latin-1 rather than failing.

    Parameters
    ----------
    path : path-like
        A video or audio file (any name, including ones starting with ``-``).

    Returns
    -------
    MediaInfo

    Raises
    ------
    destatic.errors.BadInputError
        The file is missing, unreadable, not media, or a playlist or concat list
        (refused: they could open other files or URLs).
    destatic.errors.TransientError
        ffmpeg was killed or hit an I/O error.
    """
    _ffmpeg.check_readable(path)
    args = [*_ffmpeg.base_args(loglevel="info"), *_ffmpeg.input_args(path)]
    done = _ffmpeg.run(args, source=path, check=False)
    text = _ffmpeg.decode_text(done.stderr)
    if "Input #0" not in text:
        raise _ffmpeg.classify_failure(text, source=path)
    info = parse_report(text, Path(os.fsdecode(path)))
    if info.streams and stream_index_gaps(info):
        raise BadInputError(path, "ffmpeg reported an incomplete stream list")
    return info


def stream_index_gaps(info: MediaInfo) -> bool:
    """True if the parsed stream indices are not exactly 0..n-1 (a parse that missed a stream)."""
    return sorted(s.index for s in info.streams) != list(range(len(info.streams)))
