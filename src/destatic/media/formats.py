"""The file formats destatic reads and writes, by name and suffix (loads nothing)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["AUDIO_FORMATS", "AUDIO_SUFFIXES", "VIDEO_SUFFIXES", "AudioFormat"]

AudioFormat = Literal["wav", "flac", "mp3", "m4a", "ogg", "opus"]
"""The audio-only formats destatic writes; settings and command line take their choices from here."""
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
AUDIO_SUFFIXES: dict[str, AudioFormat] = {**{f".{name}": name for name in AUDIO_FORMATS}, ".oga": "ogg"}
"""Audio file suffixes destatic reads and writes (lowercase), and the format of each."""
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg")
"""Video container suffixes destatic accepts as input (lowercase)."""
