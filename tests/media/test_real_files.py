"""Probe, extract and remux every real file in ../shared/media (video, speech, pairs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import media
from destatic.media.audio import GAP_FILL_S

from av_sync_checks import audio_lag
from media_checks import aligned_snr_db, decode, decode_frames, decode_on_timeline, packets_md5, real_file_params, sha256

# Samples per coded frame: the unit of "within one audio frame".
FRAME_SAMPLES = {"aac": 1024, "mp3": 1152, "mp2": 1152, "vorbis": 2048, "opus": 960}
LOSSLESS = {"flac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}
# Lossy re-encoding at the original bitrate or above, with the lag found, must keep this SNR.
MIN_LOSSY_SNR_DB = 20.0
# A/V sync: the output's audio against its video, as a player places it (every frame at its timestamp;
# see av_sync_checks), against the original's. Stream start times alone do not tell: they are first
# packets', and a new encoder's first packet starts elsewhere (the mp2 encoder's 481 samples before
# its audio, a Vorbis stream's first packet plays nothing).
MAX_LAG_S = 0.001


def frame_seconds(stream: media.StreamInfo) -> float:
    return FRAME_SAMPLES.get(stream.codec, 1024) / stream.sample_rate


@pytest.mark.parametrize("path", real_file_params())
def test_probe_real_file(path: Path) -> None:
    info = media.probe(path)
    audio = info.default_audio_stream
    assert audio is not None and audio.sample_rate and audio.channels
    assert info.duration is not None and info.duration > 0
    if path.suffix in (".wav", ".flac"):
        reference = sf.info(str(path))
        assert info.format_name == path.suffix[1:]
        assert (audio.sample_rate, audio.channels) == (reference.samplerate, reference.channels)
        assert info.duration == pytest.approx(reference.duration, abs=0.0051)
        assert not info.has_video
    else:
        assert info.has_video
        video = info.video_streams[0]
        assert video.width and video.height and video.fps


@pytest.mark.parametrize("path", real_file_params())
def test_extract_real_file(path: Path, tmp_path: Path) -> None:
    before = sha256(path)
    track = media.extract_audio(path, tmp_path / "audio.wav")
    extracted, rate = sf.read(tmp_path / "audio.wav", dtype="float32", always_2d=True)
    assert sha256(path) == before
    assert sf.info(str(tmp_path / "audio.wav")).subtype == "FLOAT"
    assert (track.frames, track.channels, track.sample_rate) == (*extracted.shape, rate)
    # Where the timestamps leave a gap, extraction leaves silence (fire2.mp4 starts with one of 0.16 s).
    reference = decode_on_timeline(path, gap_s=GAP_FILL_S)
    assert extracted.shape == reference.shape
    np.testing.assert_array_equal(extracted, reference)
    if path.suffix in (".wav", ".flac"):
        native, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert native_rate == rate
        np.testing.assert_array_equal(extracted, native)
    assert [p.name for p in tmp_path.iterdir()] == ["audio.wav"]


@pytest.mark.parametrize("path", real_file_params())
def test_remux_real_file_unit_gain(path: Path, tmp_path: Path) -> None:
    before = sha256(path)
    original = media.probe(path)
    track = media.extract_audio(path, tmp_path / "audio.wav")
    output = media.remux(path, track.path, tmp_path / f"out{path.suffix}")
    assert sha256(path) == before
    remuxed = media.probe(output)

    assert [(s.kind, s.codec) for s in remuxed.streams] == [(s.kind, s.codec) for s in original.streams]
    if original.has_video:
        assert packets_md5(output, "0:v") == packets_md5(path, "0:v")
    audio = original.default_audio_stream
    new_audio = remuxed.streams[audio.index]
    assert (new_audio.sample_rate, new_audio.channels) == (audio.sample_rate, audio.channels)
    tolerance = frame_seconds(audio)
    for old, new in zip(original.streams, remuxed.streams, strict=True):
        assert new.start_time == pytest.approx(old.start_time, abs=tolerance)
    # The audio as placed on the timeline: fire2.mp4's ends 0.04 s after the duration its container states.
    reference, decoded = decode_on_timeline(path, gap_s=GAP_FILL_S), decode(output)
    _, frames, rate = decode_frames(path)
    audio_end = (frames[-1][0] + frames[-1][1]) / rate - original.start_time
    assert remuxed.duration == pytest.approx(max(original.duration, audio_end), abs=tolerance + 0.01)

    frame = FRAME_SAMPLES.get(audio.codec, 0)
    assert abs(len(decoded) - len(reference)) <= frame
    if audio.codec in LOSSLESS:
        np.testing.assert_array_equal(decoded, reference)
    else:
        snr, lag = aligned_snr_db(reference, decoded)
        assert abs(lag) <= frame, f"audio shifted by {lag} samples"
        assert snr >= MIN_LOSSY_SNR_DB, f"SNR {snr:.1f} dB after re-encoding"
    lag = audio_lag(path, output)
    assert abs(lag) <= MAX_LAG_S, f"audio {lag * 1000:+.2f} ms against the video"
