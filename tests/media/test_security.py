"""Hostile names and crafted files: ffmpeg opens only the input and its own outputs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import media
from destatic.errors import BadInputError
from media_checks import MEDIA_DIR, ffmpeg_bin

HOSTILE_NAMES = [
    "-i.wav",
    "-y",
    "with space 'single' \"double\".wav",
    "new\nline.wav",
    os.fsdecode(b"caf\xe9-\xff.wav"),
    "$(touch PWNED).wav",
    "; touch PWNED;.wav",
    "concat:a.wav|b.wav",
    "http:localhost.wav",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
def test_hostile_names_work_end_to_end(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    chaplin = MEDIA_DIR / "video" / "chaplin.mp4"
    if not chaplin.is_file():
        pytest.skip(f"shared media folder {MEDIA_DIR} is absent")
    stem = name.removesuffix(".wav")
    source = tmp_path / f"{stem}.mp4"
    source.write_bytes(chaplin.read_bytes())
    monkeypatch.chdir(tmp_path)
    info = media.probe(source)
    assert info.has_video and info.path == source
    track = media.extract_audio(source, tmp_path / name)
    remuxed = media.remux(source, track.path, tmp_path / f"{stem}.out.mp4")
    exported = media.export_audio(track.path, tmp_path / f"{stem}.flac")
    assert media.probe(remuxed).streams[1].codec == "mp3"
    assert media.read_audio(exported)[0].shape == (track.frames, 2)
    assert not (tmp_path / "PWNED").exists()
    expected = {source.name, name, remuxed.name, exported.name}
    assert {p.name for p in tmp_path.iterdir()} == expected


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP server that records every connection (and what it received)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    seen.append(conn.recv(4096))
                except OSError:
                    seen.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    """Private recordings beside the crafted files: a float WAV (for concat lists) and the same
    sound as MPEG-TS (what HLS segments are). The WAV's sample bytes must leak nowhere."""
    folder = tmp_path / "private"
    folder.mkdir()
    samples = np.random.default_rng(7).uniform(-0.5, 0.5, size=(8000, 1)).astype(np.float32)
    path = folder / "secret.wav"
    sf.write(path, samples, 8000, subtype="FLOAT")
    subprocess.run(
        [ffmpeg_bin(), "-v", "error", "-nostdin", "-i", path, "-c:a", "mp2", "-ar", "32000", "-f", "mpegts", folder / "secret.ts"],
        check=True, capture_output=True,
    )
    return path, samples.tobytes()[4000:4064]


def _crafted(folder: Path, secret: Path, port: int) -> dict[str, Path]:
    url = f"http://127.0.0.1:{port}/segment.ts"
    hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\n{}\n#EXT-X-ENDLIST\n"
    concat = "ffconcat version 1.0\nfile '{}'\n"
    segment = secret.with_suffix(".ts")
    files = {
        "hls-local.mp4": hls.format(segment),
        "hls-url.avi": hls.format(url),
        "concat-local.avi": concat.format(secret),
        "concat-url.mp4": concat.format(url),
        # Under their own suffix ffmpeg would sniff playlists itself: only destatic's whitelist stops these.
        "hls-local.m3u8": hls.format(segment),
        "hls-url.m3u8": hls.format(url),
    }
    out = {}
    for name, text in files.items():
        (folder / name).write_text(text)
        out[name] = folder / name
    return out


def _leaks(secret_bytes: bytes, folder: Path, *texts: bytes) -> list[str]:
    found = [str(p) for p in folder.rglob("*") if p.is_file() and p.name != "secret.wav" and secret_bytes in p.read_bytes()]
    return found + ["output text" for t in texts if secret_bytes in t]


def test_attack_files_do_work_on_bare_ffmpeg(tmp_path: Path, secret: tuple[Path, bytes], listener: tuple[int, list[bytes]]) -> None:
    """Control: the crafted files are real attacks when ffmpeg's demuxer is not restricted."""
    path, secret_bytes = secret
    port, seen = listener
    crafted = _crafted(tmp_path, path, port)
    stolen = tmp_path / "stolen.wav"
    subprocess.run(
        [ffmpeg_bin(), "-v", "error", "-nostdin", "-f", "concat", "-safe", "0", "-i", crafted["concat-local.avi"],
         "-c:a", "pcm_f32le", "-y", stolen],
        capture_output=True, check=True, timeout=30,
    )
    assert secret_bytes in stolen.read_bytes()
    from_playlist = tmp_path / "from-playlist.wav"
    subprocess.run(
        [ffmpeg_bin(), "-v", "error", "-nostdin", "-i", crafted["hls-local.m3u8"], "-y", from_playlist],
        capture_output=True, check=True, timeout=30,
    )
    assert sf.info(str(from_playlist)).frames > 0
    subprocess.run(
        [ffmpeg_bin(), "-v", "error", "-nostdin", "-protocol_whitelist", "file,http,tcp", "-f", "hls",
         "-i", crafted["hls-url.avi"], "-f", "null", "-"],
        capture_output=True, check=False, timeout=30,
    )
    assert seen, "bare ffmpeg should have connected to the listener"


def test_crafted_playlists_cannot_read_files_or_reach_network(
    tmp_path: Path, secret: tuple[Path, bytes], listener: tuple[int, list[bytes]]
) -> None:
    path, secret_bytes = secret
    port, seen = listener
    crafted = _crafted(tmp_path, path, port)
    cleaned = tmp_path / "cleaned.wav"
    sf.write(cleaned, np.zeros((800, 1), np.float32), 8000, subtype="FLOAT")
    out = tmp_path / "out"
    out.mkdir()
    for name, source in crafted.items():
        attempts = [
            lambda: media.probe(source),
            lambda: media.extract_audio(source, out / f"{name}.wav"),
            lambda: media.read_audio(source),
            lambda: media.remux(source, cleaned, out / f"remuxed-{name}.mp4"),
            lambda: media.export_audio(source, out / f"{name}.flac"),
        ]
        for attempt in attempts:
            with pytest.raises(BadInputError) as caught:
                attempt()
            assert secret_bytes not in str(caught.value).encode("utf-8", "surrogateescape")
    assert list(out.iterdir()) == []
    assert seen == [], f"ffmpeg connected to the listener: {seen!r}"
    assert _leaks(secret_bytes, tmp_path) == []


def test_media_does_not_import_prefect() -> None:
    code = "import sys, destatic.media; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
