"""ffmpeg media layer: probe, extract, remux and export, safely and atomically.

Uses the ffmpeg binary shipped by imageio-ffmpeg (or ``$DESTATIC_FFMPEG``).
No Prefect here: the pipeline calls these functions from its tasks.
"""

from destatic.media._ffmpeg import time_limit
from destatic.media.atomic import atomic_output
from destatic.media.loudness import Loudness, measure_loudness
from destatic.media.audio import (
    AUDIO_FORMATS,
    AUDIO_SUFFIXES,
    AudioFormat,
    AudioTrack,
    export_audio,
    extract_audio,
    read_audio,
    wav_blocks,
    wav_info,
)
from destatic.media.probe import MediaInfo, StreamInfo, probe
from destatic.media.remux import remux

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg")
"""Video container suffixes destatic accepts as input (lowercase)."""

__all__ = [
    "AUDIO_FORMATS",
    "AUDIO_SUFFIXES",
    "VIDEO_SUFFIXES",
    "AudioFormat",
    "AudioTrack",
    "Loudness",
    "MediaInfo",
    "StreamInfo",
    "atomic_output",
    "export_audio",
    "extract_audio",
    "measure_loudness",
    "probe",
    "read_audio",
    "remux",
    "time_limit",
    "wav_blocks",
    "wav_info",
]
