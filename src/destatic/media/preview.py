"""Short, small preview clips of a video with another soundtrack, for the listening report (moviepy).

moviepy (imported on first use) decodes and re-encodes through the ffmpeg
binary of imageio-ffmpeg. A preview is re-encoded (small, low bitrate);
the real output never goes through here, its video is copied bit for bit
(:mod:`destatic.media.remuxing`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from destatic.media import _ffmpeg
from destatic.media.atomic import atomic_output

__all__ = ["PREVIEW_WIDTH", "preview_clip", "preview_clips", "preview_size"]

PREVIEW_WIDTH = 320
"""Pixels; narrower videos keep their width."""
VIDEO_BITRATE = "160k"
AUDIO_BITRATE = "64k"


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
        The ``.mp4`` to write (atomically); moviepy's temporary audio file goes beside it,
        never into the current folder.
    start, end : float
        The excerpt, seconds of the video's timeline.
    max_width : int
        Pixels.

    Returns
    -------
    Path
        `target`.
    """
    from moviepy import AudioFileClip, VideoFileClip

    target = Path(target)
    with VideoFileClip(str(video), audio=False) as probe:
        size = preview_size(*probe.size, max_width=max_width)
    with (
        VideoFileClip(str(video), audio=False, target_resolution=size) as source,
        AudioFileClip(str(audio)) as sound,
        atomic_output(target) as partial,
    ):
        end = min(end, source.duration or end)
        start = min(max(0.0, start), max(0.0, end - 0.1))
        clip = source.subclipped(start, end)
        clip = clip.with_audio(sound.subclipped(0, min(sound.duration, clip.duration)))
        clip.write_videofile(
            str(partial),
            codec="libx264",
            audio_codec="aac",
            bitrate=VIDEO_BITRATE,
            audio_bitrate=AUDIO_BITRATE,
            preset="veryfast",
            audio_fps=sound.fps,
            temp_audiofile=str(target.with_name(target.stem + "-sound.m4a")),
            threads=1,
            ffmpeg_params=["-movflags", "+faststart", "-pix_fmt", "yuv420p"],
            logger=None,
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

    moviepy cuts, scales and encodes the first (:func:`preview_clip`); the
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
                    "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", AUDIO_BITRATE,
                    "-shortest", "-movflags", "+faststart", *_ffmpeg.output_args(partial, muxer="mp4"),
                ],
                source=video,
            )
        clips[label] = target
    return clips
