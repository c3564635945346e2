"""Short, small preview clips of a video with another soundtrack, for the listening report.

One ffmpeg call cuts, scales and encodes a preview (small, low bitrate);
the real output never goes through here, its video is copied bit for bit
(:mod:`destatic.media.remuxing`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from destatic.errors import BadInputError
from destatic.media import _ffmpeg
from destatic.media.atomic import atomic_output
from destatic.media.probe import probe

__all__ = ["PREVIEW_WIDTH", "preview_clip", "preview_clips", "preview_size"]

PREVIEW_WIDTH = 320
"""Pixels; narrower videos keep their width."""
VIDEO_BITRATE = "160k"
AUDIO_BITRATE = "64k"
_SOUND_AND_MP4 = ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-shortest", "-movflags", "+faststart"]
"""The sound's encoding and the MP4's layout (the index first: a page plays it as it loads), for every preview."""


def preview_size(width: int, height: int, *, max_width: int = PREVIEW_WIDTH) -> tuple[int, int]:
    """The preview's frame size: at most `max_width` wide, the aspect kept, both sides even (for yuv420p)."""
    scale = min(1.0, max_width / max(width, 1))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def preview_clip(
    video: os.PathLike[str] | str,
    audio: os.PathLike[str] | str,
    target: os.PathLike[str] | str,
    *,
    start: float,
    end: float,
    max_width: int = PREVIEW_WIDTH,
) -> Path:
    """Write `video` from `start` to `end` seconds, scaled down, with `audio` as its sound, as an H.264/AAC MP4.

    Parameters
    ----------
    video : path-like
        The source video (its own audio is not used).
    audio : path-like
        The soundtrack, as long as the excerpt (a longer one is cut at ``end - start``).
    target : path-like
        The ``.mp4`` to write (atomically).
    start, end : float
        The excerpt, seconds of the video's timeline.
    max_width : int
        Pixels.

    Returns
    -------
    Path
        `target`.
    """
    target = Path(target)
    info = probe(video)
    if not info.video_streams:
        raise BadInputError(f"{os.fsdecode(video)!r} has no video stream to preview")
    picture = info.video_streams[0]
    width, height = preview_size(picture.width or max_width, picture.height or max_width, max_width=max_width)
    end = min(end, info.duration or end)
    start = min(max(0.0, start), max(0.0, end - 0.1))
    if picture.fps:  # from the frame on screen at `start` (ffmpeg would begin with the next one)
        start = math.floor(start * picture.fps + 1e-6) / picture.fps
    with atomic_output(target) as partial:
        _ffmpeg.run(
            [
                *_ffmpeg.base_args(), "-ss", f"{start:.6f}", "-t", f"{end - start:.6f}", *_ffmpeg.input_args(video),
                *_ffmpeg.input_args(audio),
                "-map", f"0:{picture.index}", "-map", "1:a:0", "-vf", f"scale={width}:{height}",
                "-c:v", "libx264", "-preset", "veryfast", "-b:v", VIDEO_BITRATE, "-pix_fmt", "yuv420p", "-threads", "1",
                *_SOUND_AND_MP4, *_ffmpeg.output_args(partial, muxer="mp4"),
            ],
            source=video,
        )
    return target


def preview_clips(
    video: os.PathLike[str] | str,
    sounds: Mapping[str, os.PathLike[str] | str],
    stem: Path,
    *,
    start: float,
    end: float,
    max_width: int = PREVIEW_WIDTH,
) -> dict[str, Path]:
    """The same preview of `video` once per soundtrack, as ``<stem>-<label>.mp4``.

    The first is cut, scaled and encoded (:func:`preview_clip`); the
    others copy its video stream with their own sound (one ffmpeg call each,
    no second decode of the source).

    Parameters
    ----------
    video : path-like
        The source video.
    sounds : mapping
        Label -> soundtrack, in order.
    stem : Path
        The clips' common path prefix.
    start, end, max_width
        As for :func:`preview_clip`.

    Returns
    -------
    dict
        Label -> clip.
    """
    clips: dict[str, Path] = {}
    for label, sound in sounds.items():
        target = stem.with_name(f"{stem.name}-{label}.mp4")
        if not clips:
            clips[label] = preview_clip(video, sound, target, start=start, end=end, max_width=max_width)
            continue
        first = next(iter(clips.values()))
        with atomic_output(target) as partial:
            _ffmpeg.run(
                [
                    *_ffmpeg.base_args(), *_ffmpeg.input_args(first), *_ffmpeg.input_args(sound),
                    "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *_SOUND_AND_MP4, *_ffmpeg.output_args(partial, muxer="mp4"),
                ],
                source=video,
            )
        clips[label] = target
    return clips
