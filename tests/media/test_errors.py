"""Bad inputs raise BadInputError naming the file, transient failures TransientError, and
nothing is left behind after a failure."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import media
from destatic.errors import BadInputError, ParameterError, TransientError
from destatic.media import _ffmpeg
from media_checks import MEDIA_DIR, sha256

CHAPLIN = MEDIA_DIR / "video" / "chaplin.mp4"
FIRE = MEDIA_DIR / "video" / "fire2.mp4"
SPEECH = MEDIA_DIR / "speech" / "sp01.wav"


@pytest.fixture
def real_media() -> None:
    if not CHAPLIN.is_file():
        pytest.skip(f"shared media folder {MEDIA_DIR} is absent")


def _unknown_codec_wav(path: Path) -> Path:
    data = bytes(4000)
    fmt = struct.pack("<HHIIHH", 0x7777, 1, 8000, 16000, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _half_of(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _missing(folder: Path) -> Path:
    return folder / "missing.mp4"


def _empty_file(folder: Path) -> Path:
    (folder / "empty.mp4").write_bytes(b"")
    return folder / "empty.mp4"


def _text(folder: Path) -> Path:
    (folder / "notes.mp4").write_text("not a video at all\n")
    return folder / "notes.mp4"


def _directory(folder: Path) -> Path:
    (folder / "folder.mp4").mkdir()
    return folder / "folder.mp4"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.wav")
    return folder / "pipe.wav"


def _no_samples(folder: Path) -> Path:
    sf.write(folder / "silence.wav", np.zeros((0, 1)), 8000)
    return folder / "silence.wav"


def _unknown_codec(folder: Path) -> Path:
    return _unknown_codec_wav(folder / "odd.wav")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_missing, "does not exist"),
        (_empty_file, "is empty"),
        (_text, "not media"),
        (_directory, "is a directory"),
        (_fifo, "not a regular file"),
        (_unknown_codec, "audio codec not supported"),
        (_no_samples, "empty audio"),
    ],
    ids=["missing", "empty-file", "not-media", "directory", "fifo", "unknown-codec", "no-samples"],
)
def test_bad_input_names_file_and_reason(tmp_path: Path, make, reason: str) -> None:
    source = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BadInputError) as caught:
        media.extract_audio(source, out / "a.wav")
    message = str(caught.value)
    assert message.startswith(f"{source}: ") and reason in message and "\n" not in message
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["chaplin.mp4", "fire2.mp4", "creative_common.mp4", "big_buck_bunny_0_30.webm", "bbaf2n.mpg"])
def test_truncated_video_is_bad_input(real_media: None, tmp_path: Path, name: str) -> None:
    truncated = _half_of(MEDIA_DIR / "video" / name, tmp_path / f"half-{name}")
    with pytest.raises(BadInputError, match=r"half-.*: (not media, )?truncated or corrupt"):
        media.extract_audio(truncated, tmp_path / "a.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == [truncated.name]


def test_truncated_wav_is_bad_input(real_media: None, tmp_path: Path) -> None:
    truncated = _half_of(SPEECH, tmp_path / "half.wav")
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        media.read_audio(truncated)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_is_bad_input(real_media: None, tmp_path: Path) -> None:
    locked = tmp_path / "locked.wav"
    locked.write_bytes(SPEECH.read_bytes())
    locked.chmod(0)
    with pytest.raises(BadInputError, match="permission denied"):
        media.probe(locked)


def test_ffmpeg_killed_by_signal_is_transient(real_media: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ffmpeg, limited to 64 kB of output: the kernel kills it with SIGXFSZ."""
    wrapper = tmp_path / "limited-ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nulimit -f 128\nexec "{_ffmpeg.ffmpeg_exe()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, str(wrapper))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TransientError, match="killed by signal SIGXFSZ"):
        media.extract_audio(CHAPLIN, out / "a.wav")
    assert list(out.iterdir()) == []


def test_disk_full_is_transient(real_media: None) -> None:
    args = [*_ffmpeg.base_args(), *_ffmpeg.input_args(SPEECH), "-c:a", "pcm_f32le", "-f", "wav", "-y", "/dev/full"]
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(TransientError, match="No space left on device"):
        _ffmpeg.run(args, source=SPEECH)


def test_bad_ffmpeg_override_is_parameter_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, "/nonexistent/ffmpeg")
    with pytest.raises(ParameterError, match="DESTATIC_FFMPEG='/nonexistent/ffmpeg'"):
        _ffmpeg.ffmpeg_exe()


def test_atomic_output_renames_on_success_and_cleans_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.wav"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), media.atomic_output(target) as partial:
        assert partial.parent == tmp_path and partial.suffix == ".wav" and not partial.exists()
        partial.write_bytes(b"half")
        raise RuntimeError("step failed")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with media.atomic_output(target) as partial:
        partial.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("stem", ["n" * 250, "é" * 125, "short"])
def test_atomic_output_works_for_names_up_to_the_filesystem_limit(tmp_path: Path, stem: str) -> None:
    target = tmp_path / f"{stem}.wav"
    with media.atomic_output(target) as partial:
        assert len(os.fsencode(partial.name)) <= 255 and partial.suffix == ".wav"
        partial.write_bytes(b"done")
    assert target.read_bytes() == b"done" and sorted(tmp_path.iterdir()) == [target]

def test_failed_remux_leaves_nothing_and_keeps_inputs(real_media: None, tmp_path: Path, generated: dict[str, Path]) -> None:
    source = generated["multi.mkv"]
    track = media.extract_audio(source, tmp_path / "a.wav")
    before = {p.name: sha256(p) for p in (source, track.path)}
    # mp4 cannot hold the SubRip subtitles: ffmpeg fails after creating its output.
    with pytest.raises(BadInputError, match="multi.mkv"):
        media.remux(source, track.path, tmp_path / "out.mp4")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("text")
    with pytest.raises(BadInputError, match="notes.wav: not media"):
        media.remux(CHAPLIN, not_audio, tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "notes.wav"]
    assert {p.name: sha256(p) for p in (source, track.path)} == before


def test_remux_refuses_to_overwrite_its_input(real_media: None, tmp_path: Path) -> None:
    copy = tmp_path / "clip.mp4"
    copy.write_bytes(CHAPLIN.read_bytes())
    track = media.extract_audio(copy, tmp_path / "a.wav")
    with pytest.raises(ParameterError, match="is the original file"):
        media.remux(copy, track.path, copy)
    assert sha256(copy) == sha256(CHAPLIN)
