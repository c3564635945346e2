"""Remux keeps every other stream, tag, disposition, chapter and the audio start offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from destatic import media
from destatic.errors import BadInputError, ParameterError
from media_checks import aligned_snr_db, decode, packets_md5


def test_probe_multi_track_file(generated: dict[str, Path]) -> None:
    info = media.probe(generated["multi.mkv"])
    assert [s.kind for s in info.streams] == ["video", "audio", "audio", "subtitle"]
    assert [s.codec for s in info.streams] == ["h264", "vorbis", "opus", "subrip"]
    first, second = info.audio_streams
    assert (first.sample_rate, first.language, first.default) == (44100 if first.codec == "opus" else 48000, "eng", False)
    assert (second.language, second.default, second.tags.get("title")) == ("fra", True, "commentary")
    assert info.default_audio_stream is second
    assert info.chapters == 2
    assert info.tags["title"] == "generated"
    assert info.streams[0].duration == pytest.approx(2.0, abs=0.05)


def test_remux_replaces_only_the_chosen_track(generated: dict[str, Path], tmp_path: Path) -> None:
    source = generated["multi.mkv"]
    track = media.extract_audio(source, tmp_path / "second.wav")
    assert track.stream == 2 and track.codec == "opus"
    audio, rate = media.read_audio(source, stream=2)
    quieter = tmp_path / "quieter.wav"
    import soundfile as sf

    sf.write(quieter, audio * 0.5, rate, subtype="FLOAT")
    output = media.remux(source, quieter, tmp_path / "out.mkv", stream=2)
    before, after = media.probe(source), media.probe(output)
    assert [(s.kind, s.codec, s.language, s.dispositions) for s in after.streams] == [
        (s.kind, s.codec, s.language, s.dispositions) for s in before.streams
    ]
    assert after.streams[2].tags.get("title") == "commentary"
    assert after.chapters == before.chapters == 2
    assert after.tags["title"] == "generated"
    for spec in ("0:0", "0:1", "0:3"):
        assert packets_md5(output, spec) == packets_md5(source, spec), spec
    assert packets_md5(output, "0:2") != packets_md5(source, "0:2")
    snr, lag = aligned_snr_db(decode(source, "0:2") * 0.5, decode(output, "0:2"))
    assert abs(lag) <= 960 and snr > 20


def test_remux_keeps_cover_art_of_audio_file(generated: dict[str, Path], tmp_path: Path) -> None:
    source = generated["cover.m4a"]
    info = media.probe(source)
    assert not info.has_video and info.streams[1].attached_pic
    track = media.extract_audio(source, tmp_path / "a.wav")
    output = media.remux(source, track.path, tmp_path / "out.m4a")
    after = media.probe(output)
    assert after.streams[1].attached_pic and after.tags.get("title") == "Cover song"
    assert packets_md5(output, "0:1") == packets_md5(source, "0:1")


def test_start_offset_survives_extract_and_remux(generated: dict[str, Path], tmp_path: Path) -> None:
    source = generated["delayed.mp4"]
    info = media.probe(source)
    audio = info.default_audio_stream
    assert audio.start_time == pytest.approx(0.5, abs=0.03)
    track = media.extract_audio(source, tmp_path / "a.wav")
    assert track.offset == pytest.approx(audio.start_time - info.start_time)
    assert track.frames == len(decode(source))
    output = media.remux(source, track.path, tmp_path / "out.mp4")
    after = media.probe(output)
    frame = 1024 / 48000
    new_start = after.default_audio_stream.start_time - after.start_time
    assert new_start == pytest.approx(track.offset, abs=frame + 1e-6)
    # The encoder's priming may move the first timestamp; the sound itself must not move against the video.
    snr, lag = aligned_snr_db(decode(source), decode(output))
    assert snr > 20
    assert new_start + lag / 48000 == pytest.approx(track.offset, abs=0.002)
    assert packets_md5(output, "0:v") == packets_md5(source, "0:v")


def test_remux_avi(generated: dict[str, Path], tmp_path: Path) -> None:
    source = generated["clip.avi"]
    track = media.extract_audio(source, tmp_path / "a.wav")
    output = media.remux(source, track.path, tmp_path / "out.avi")
    assert [s.codec for s in media.probe(output).streams] == ["mpeg4", "mp3"]
    assert packets_md5(output, "0:v") == packets_md5(source, "0:v")


def test_reencode_video_only_when_asked(generated: dict[str, Path], tmp_path: Path) -> None:
    source = generated["delayed.mp4"]
    track = media.extract_audio(source, tmp_path / "a.wav")
    output = media.remux(source, track.path, tmp_path / "out.mp4", reencode_video=True)
    assert media.probe(output).video_streams[0].codec == "h264"
    assert packets_md5(output, "0:v") != packets_md5(source, "0:v")


def test_audio_codec_choice(generated: dict[str, Path], tmp_path: Path) -> None:
    source = generated["multi.mkv"]
    track = media.extract_audio(source, tmp_path / "a.wav")
    output = media.remux(source, track.path, tmp_path / "out.mkv", audio_codec="flac")
    assert media.probe(output).streams[2].codec == "flac"
    np.testing.assert_allclose(decode(output, "0:2"), decode(source, "0:2"), atol=2**-23)
    with pytest.raises(ParameterError, match="audio_codec='flac'.*webm"):
        media.remux(source, track.path, tmp_path / "out.webm", audio_codec="flac")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "out.mkv"]


def test_stream_must_be_audio(generated: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="stream=0 is not an audio stream.*1, 2"):
        media.extract_audio(generated["multi.mkv"], tmp_path / "a.wav", stream=0)
    assert list(tmp_path.iterdir()) == []


def test_video_without_audio_is_bad_input(generated: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"silent\.mp4: has no audio stream"):
        media.extract_audio(generated["silent.mp4"], tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "kinds"),
    [("timecode.mov", ["video", "audio", "data"]), ("attached.mkv", ["video", "audio", "attachment"])],
)
def test_remux_keeps_data_and_attachment_streams(generated: dict[str, Path], tmp_path: Path, name: str, kinds: list[str]) -> None:
    source = generated[name]
    before = media.probe(source)
    assert [s.kind for s in before.streams] == kinds
    track = media.extract_audio(source, tmp_path / "a.wav")
    output = media.remux(source, track.path, tmp_path / f"out{source.suffix}")
    after = media.probe(output)
    assert [(s.kind, s.codec) for s in after.streams] == [(s.kind, s.codec) for s in before.streams]
    assert after.streams[2].tags.get("timecode") == before.streams[2].tags.get("timecode")
    assert after.streams[2].tags.get("filename") == before.streams[2].tags.get("filename")
    assert packets_md5(output, "0:0") == packets_md5(source, "0:0")
    if before.streams[1].codec == "flac":
        np.testing.assert_array_equal(decode(output), decode(source))
