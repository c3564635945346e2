"""ffmpeg media layer: probe, extract, remux and export, safely and atomically.

Uses the ffmpeg binary shipped by imageio-ffmpeg (or ``$DESTATIC_FFMPEG``).
No Prefect here: the pipeline calls these functions from its tasks.
"""

from typing import TYPE_CHECKING

from destatic._lazy import lazy_package
from destatic.media.probe import MediaInfo, StreamInfo, probe  # light, and bound here: probe is also the submodule's name

__getattr__, __dir__, __all__ = lazy_package(__name__)

if TYPE_CHECKING:
    from destatic.media._ffmpeg import fixed_time_limit, time_limit
    from destatic.media.atomic import atomic_output
    from destatic.media.audio import AudioTrack, export_audio, extract_audio, first_sample_time, float_wav_writer, read_audio, wav_blocks, wav_clip, wav_info
    from destatic.media.formats import AUDIO_FORMATS, AUDIO_SUFFIXES, VIDEO_SUFFIXES, AudioFormat
    from destatic.media.loudness import Loudness, measure_loudness
    from destatic.media.preview import preview_clip, preview_clips, preview_size
    from destatic.media.remuxing import remux
