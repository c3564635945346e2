"""A/V sync: a file's own audio, extracted and remuxed, plays where it played, within 1 ms.

The pipeline puts cleaned audio back with :func:`destatic.media.remux`; the
denoiser is sample aligned, so remuxing the extracted audio itself must leave
it in place against the video. Lags are measured as a player places the audio
(see ``av_sync_checks``).
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

import av_sync_checks as av
from destatic import media
from media_checks import ffmpeg

MAX_LAG_S = 0.001


def test_timestamp_gap_is_filled_with_silence(tmp_path: Path) -> None:
    """A gap in the audio's timestamps (0.3 s at 1 s) is silence in the WAV: what follows stays in sync."""
    wav = tmp_path / "signal.wav"
    frames = 3 * 48000 + 517
    sf.write(wav, av.noise_signal(48000, 2, frames, seed=5), 48000, subtype="FLOAT")
    source = tmp_path / "gap.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x128:rate=25:duration=3.6", "-i", wav, "-map", "0:v", "-map", "1:a",
        "-af", "asetpts=PTS+gte(T\\,1)*0.3/TB", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", source,
    )
    track = media.extract_audio(source, tmp_path / "audio.wav")
    assert track.frames == frames + round(0.3 * 48000)
    audio, _ = sf.read(track.path, always_2d=True)
    silent = ~audio.any(axis=1)
    assert silent[48000 : 48000 + 8192].any() and silent.sum() >= round(0.3 * 48000)
    output = media.remux(source, track.path, tmp_path / "out.mp4")
    lag = av.audio_lag(source, output)
    assert abs(lag) <= MAX_LAG_S, f"audio {lag * 1000:+.2f} ms against the video"

