"""Audio-only export: lossless by default, each format decodes back to the same sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import media
from destatic.errors import ParameterError
from media_checks import aligned_snr_db, decode


@pytest.fixture
def chirp_wav(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """2 s stereo float chirp at 44.1 kHz, with peaks that need more than 16 bits."""
    t = np.arange(2 * 44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * (100 + 2000 * t) * t)
    audio = np.stack([left, 0.7 * left[::-1]], axis=1).astype(np.float32)
    path = tmp_path / "cleaned.wav"
    sf.write(path, audio, 44100, subtype="FLOAT")
    return path, audio


@pytest.mark.parametrize(
    ("suffix", "bit_depth", "codec", "tolerance"),
    [
        (".wav", None, "pcm_f32le", 0.0),
        (".wav", 24, "pcm_s24le", 2.0**-23),
        (".wav", 16, "pcm_s16le", 2.0**-15),
        (".flac", None, "flac", 2.0**-23),
        (".flac", 16, "flac", 2.0**-15),
    ],
)
def test_lossless_export(chirp_wav, tmp_path: Path, suffix: str, bit_depth: int | None, codec: str, tolerance: float) -> None:
    source, audio = chirp_wav
    output = media.export_audio(source, tmp_path / f"out{suffix}", bit_depth=bit_depth)
    assert media.probe(output).streams[0].codec == codec
    decoded = decode(output)
    assert decoded.shape == audio.shape
    np.testing.assert_allclose(decoded, audio, atol=tolerance, rtol=0)
    if bit_depth != 16:
        assert np.abs(decoded - audio).max() < 2.0**-16, "more than 16 bits must survive"


@pytest.mark.parametrize(
    ("name", "format", "codec", "rate"),
    [
        ("out.mp3", None, "mp3", 44100),
        ("out.m4a", None, "aac", 44100),
        ("out.ogg", None, "vorbis", 44100),
        ("out.opus", None, "opus", 48000),
        ("renamed.bin", "flac", "flac", 44100),
    ],
)
def test_encoded_export(chirp_wav, tmp_path: Path, name: str, format: str | None, codec: str, rate: int) -> None:
    source, audio = chirp_wav
    output = media.export_audio(source, tmp_path / name, format=format)
    stream = media.probe(output).streams[0]
    assert (stream.codec, stream.sample_rate, stream.channels) == (codec, rate, 2)
    if rate == 44100:
        snr, lag = aligned_snr_db(audio, decode(output))
        assert abs(lag) <= 2048 and snr > 20


def test_export_bitrate(chirp_wav, tmp_path: Path) -> None:
    source, _ = chirp_wav
    low = media.export_audio(source, tmp_path / "low.mp3", bitrate=64_000)
    high = media.export_audio(source, tmp_path / "high.mp3", bitrate=256_000)
    assert media.probe(low).streams[0].bitrate == 64_000
    assert media.probe(high).streams[0].bitrate == 256_000


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("out.xyz", {}, "cannot derive a format from output suffix '.xyz'"),
        ("out.wav", {"format": "aiff"}, "format='aiff' is not supported"),
        ("out.wav", {"bit_depth": 8}, "bit_depth=8 for wav must be 16, 24 or 32"),
        ("out.mp3", {"bit_depth": 16}, "bit_depth=16 applies to wav and flac only"),
        ("out.flac", {"bitrate": 128_000}, "bitrate=128000 applies to lossy formats only"),
        ("out.mp3", {"bitrate": 12}, "bitrate=12 must be an integer number of bits per second"),
    ],
)
def test_export_rejects_bad_options(chirp_wav, tmp_path: Path, name: str, options: dict, message: str) -> None:
    source, _ = chirp_wav
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")):
        media.export_audio(source, tmp_path / name, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cleaned.wav"]


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus"])
def test_export_low_rate_mono(tmp_path: Path, suffix: str) -> None:
    """Telephone-band speech (8 kHz mono) exports to every format with the defaults."""
    t = np.arange(3 * 8000) / 8000
    source = tmp_path / "speech.wav"
    sf.write(source, (0.4 * np.sin(2 * np.pi * (150 + 300 * t) * t))[:, None].astype(np.float32), 8000, subtype="FLOAT")
    output = media.export_audio(source, tmp_path / f"out{suffix}")
    stream = media.probe(output).streams[0]
    assert stream.channels == 1 and stream.sample_rate == (48000 if suffix == ".opus" else 8000)
    assert len(decode(output)) >= 3 * stream.sample_rate
