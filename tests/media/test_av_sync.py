"""A/V sync: a file's own audio, extracted and remuxed, plays where it played, within 1 ms.

The pipeline puts cleaned audio back with :func:`destatic.media.remux`; the
denoiser is sample aligned, so remuxing the extracted audio itself must leave
it in place against the video. Lags are measured as a player places the audio
(see ``av_sync_checks``). One file per codec and container by default; the
whole grid (rates, channels, lengths, offsets) with ``-m slow``.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

import av_sync_checks as av
from destatic import media
from destatic.media import remuxing
from destatic.media.remuxing import _ENCODERS, encoder_delay
from media_checks import ffmpeg

MAX_LAG_S = 0.001

FAST = av.fast_grid()


def remuxed_lag(source: Path, folder: Path, **options: object) -> float:
    """Seconds by which `source`'s own audio, extracted and remuxed, plays late against its video."""
    track = media.extract_audio(source, folder / "audio.wav")
    output = media.remux(source, track.path, folder / f"out{source.suffix}", **options)
    return av.audio_lag(source, output)


@pytest.mark.parametrize("case", FAST, ids=lambda case: case.name)
def test_remuxed_audio_stays_in_sync(case: av.Case, tmp_path: Path) -> None:
    source = av.make_source(case, tmp_path, seed=FAST.index(case))
    lag = remuxed_lag(source, tmp_path)
    assert abs(lag) <= MAX_LAG_S, f"{case.name}: audio {lag * 1000:+.2f} ms against the video"


@pytest.mark.slow
@pytest.mark.parametrize("case", [case for case in av.grid() if case not in FAST], ids=lambda case: case.name)
def test_remuxed_audio_stays_in_sync_grid(case: av.Case, tmp_path: Path) -> None:
    source = av.make_source(case, tmp_path, seed=zlib.crc32(case.name.encode()) % 1000)
    lag = remuxed_lag(source, tmp_path)
    assert abs(lag) <= MAX_LAG_S, f"{case.name}: audio {lag * 1000:+.2f} ms against the video"


def test_vcd_style_mpeg_ps_with_mp2(tmp_path: Path) -> None:
    """The issue's file: mpeg1video 360x288 25 fps, mp2 44.1 kHz stereo 224 kb/s, 3 s, as ffmpeg writes it.

    ffmpeg starts the mp2 stream 481 samples (its encoder delay) before the
    video; remux came back with the audio those 10.9 ms late.
    """
    wav = tmp_path / "signal.wav"
    sf.write(wav, av.noise_signal(44100, 2, 3 * 44100 + 331, seed=16), 44100, subtype="FLOAT")
    source = tmp_path / "vcd.mpg"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=360x288:rate=25:duration=3", "-i", wav,
        "-c:v", "mpeg1video", "-b:v", "1150k", "-c:a", "mp2", "-b:a", "224k", source,
    )
    info = media.probe(source)
    assert info.default_audio_stream.start_time < info.video_streams[0].start_time  # the case that went wrong
    lag = remuxed_lag(source, tmp_path)
    assert abs(lag) <= MAX_LAG_S, f"audio {lag * 1000:+.2f} ms against the video"


@pytest.mark.parametrize(
    ("suffix", "offset"), [(".mp4", 0.0), (".mp4", 0.137), (".mov", -0.2), (".ts", 0.0), (".ts", -0.2), (".m4a", 0.0)]
)
def test_split_aac_encode_stays_in_sync(suffix: str, offset: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AAC encoded by two processes and spliced (long enough for a split) keeps its place too."""
    spliced = []
    unspied = remuxing.segment_encoded_aac

    @contextlib.contextmanager
    def spy(*args: object, **kwargs: object) -> Iterator[object]:
        with unspied(*args, **kwargs) as result:
            spliced.append(result)
            yield result

    monkeypatch.setattr(remuxing, "segment_encoded_aac", spy)
    case = av.Case(suffix, "aac", 44100, 2, 517, offset, seconds=5)
    source = av.make_source(case, tmp_path)
    lag = remuxed_lag(source, tmp_path, n_jobs=2)
    assert spliced[0] is not None and spliced[0].splices, "the encode was not split"
    assert abs(lag) <= MAX_LAG_S, f"{case.name}: audio {lag * 1000:+.2f} ms against the video"


def test_first_sample_time_is_after_pre_skip(tmp_path: Path) -> None:
    """Opus in mp4: the first packet starts 312 samples (its pre-skip) before the first sample played."""
    source = av.make_source(av.Case(".mp4", "opus", 48000, 2, 517, 0.137), tmp_path)
    audio = media.probe(source).default_audio_stream
    assert audio.start_time == pytest.approx(0.137 - 312 / 48000, abs=2e-6)
    assert media.first_sample_time(source, audio) == pytest.approx(0.137, abs=2e-6)
    track = media.extract_audio(source, tmp_path / "audio.wav")
    assert track.start_time == track.offset == pytest.approx(0.137, abs=2e-6)


@pytest.mark.parametrize(("codec", "delay"), [("mp2", 481), ("mp3", 1105), ("ac3", 256), ("aac", 1024)])
def test_encoder_delay(codec: str, delay: int, tmp_path: Path) -> None:
    wav = tmp_path / "signal.wav"
    sf.write(wav, av.noise_signal(44100, 2, 44100, seed=1), 44100, subtype="FLOAT")
    stream = media.probe(wav).streams[0]
    assert encoder_delay(_ENCODERS[codec], wav, stream) == delay


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
