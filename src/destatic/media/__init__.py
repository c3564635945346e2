"""ffmpeg media layer: probe, extract, remux and export, safely and atomically.

Uses the ffmpeg binary shipped by imageio-ffmpeg (or ``$DESTATIC_FFMPEG``).
No Prefect here: the pipeline calls these functions from its tasks.
"""

from typing import TYPE_CHECKING

from destatic._lazy import lazy_names
from destatic.media.probe import MediaInfo, StreamInfo, probe  # light, and bound here: probe is also the submodule's name

_NAMES = {
    **dict.fromkeys(("fixed_time_limit", "time_limit"), "destatic.media._ffmpeg"),
    "atomic_output": "destatic.media.atomic",
    **dict.fromkeys(("AudioTrack", "export_audio", "extract_audio", "first_sample_time", "float_wav_writer", "read_audio", "wav_blocks", "wav_clip", "wav_info"), "destatic.media.audio"),
    **dict.fromkeys(("AUDIO_FORMATS", "AUDIO_SUFFIXES", "VIDEO_SUFFIXES", "AudioFormat"), "destatic.media.formats"),
    **dict.fromkeys(("Loudness", "measure_loudness"), "destatic.media.loudness"),
    "remux": "destatic.media.remuxing",
    **dict.fromkeys(("preview_clip", "preview_clips", "preview_size"), "destatic.media.preview"),
}
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
__all__ = [
    "AUDIO_FORMATS",
    "AUDIO_SUFFIXES",
    "AudioFormat",
    "AudioTrack",
    "Loudness",
    "MediaInfo",
    "StreamInfo",
    "VIDEO_SUFFIXES",
    "atomic_output",
    "export_audio",
    "extract_audio",
    "first_sample_time",
    "fixed_time_limit",
    "float_wav_writer",
    "measure_loudness",
    "preview_clip",
    "preview_clips",
    "preview_size",
    "probe",
    "read_audio",
    "remux",
    "time_limit",
    "wav_blocks",
    "wav_clip",
    "wav_info",
]

if TYPE_CHECKING:
    from destatic.media._ffmpeg import fixed_time_limit, time_limit
    from destatic.media.atomic import atomic_output
    from destatic.media.audio import AudioTrack, export_audio, extract_audio, first_sample_time, float_wav_writer, read_audio, wav_blocks, wav_clip, wav_info
    from destatic.media.formats import AUDIO_FORMATS, AUDIO_SUFFIXES, VIDEO_SUFFIXES, AudioFormat
    from destatic.media.loudness import Loudness, measure_loudness
    from destatic.media.preview import preview_clip, preview_clips, preview_size
    from destatic.media.remuxing import remux
