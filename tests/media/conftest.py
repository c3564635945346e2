"""Fixtures for the media tests: synthetic files with what the real ones lack."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_checks import ffmpeg


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic files with what the real ones lack: several audio tracks, subtitles,
    chapters, tags, cover art, an audio start offset, a video without audio."""
    root = tmp_path_factory.mktemp("generated")
    srt = root / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n2\n00:00:01,000 --> 00:00:02,000\nworld\n")
    chapters = root / "chapters.txt"
    chapters.write_text(
        ";FFMETADATA1\ntitle=generated\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=one\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=two\n"
    )
    files = {}
    mkv = root / "multi.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
        "-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*(300*t+675*t*t)):s=44100:d=2",
        "-i", srt, "-i", chapters,
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-map_metadata", "4", "-map_chapters", "4",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a:0", "libvorbis", "-c:a:1", "libopus", "-c:s", "srt",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=commentary",
        "-disposition:a:0", "0", "-disposition:a:1", "default", mkv,
    )
    files["multi.mkv"] = mkv
    cover = root / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", cover)
    m4a = root / "cover.m4a"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=2", "-i", cover,
        "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-b:a", "128k", "-c:v", "png", "-disposition:v", "attached_pic",
        "-metadata", "title=Cover song", m4a,
    )
    files["cover.m4a"] = m4a
    delayed = root / "delayed.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
        "-itsoffset", "0.5", "-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*(200+1000*t)*t):s=48000:d=1.5",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", delayed,
    )
    files["delayed.mp4"] = delayed
    silent = root / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-c:v", "libx264", "-preset", "ultrafast", silent)
    files["silent.mp4"] = silent
    avi = root / "clip.avi"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
        "-c:v", "mpeg4", "-c:a", "libmp3lame", "-b:a", "128k", avi,
    )
    files["clip.avi"] = avi
    timecode = root / "timecode.mov"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
        "-timecode", "01:00:00:00", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", timecode,
    )
    files["timecode.mov"] = timecode
    notes = root / "notes.txt"
    notes.write_text("an attachment\n")
    attached = root / "attached.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
        "-attach", notes, "-metadata:s:t", "mimetype=text/plain",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac", attached,
    )
    files["attached.mkv"] = attached
    return files
