"""Checks for the media tests, done with bare ffmpeg and soundfile.

The checks call the ffmpeg binary directly (not destatic.media), so that the
code under test is not also the judge.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

# Beside the checkout (../shared/media), or beside a folder of checkouts (a git worktree in ../wt/NAME).
MEDIA_DIR = next(
    (p / "shared" / "media" for p in Path(__file__).resolve().parents[3:5] if (p / "shared" / "media").is_dir()),
    Path(__file__).resolve().parents[3] / "shared" / "media",
)
REAL_FILES = sorted(
    p for folder in ("video", "speech", "pairs") if (MEDIA_DIR / folder).is_dir() for p in (MEDIA_DIR / folder).rglob("*") if p.is_file()
)


def real_file_params() -> list:
    """One pytest param per real media file, or one that skips when the folder is absent."""
    if not REAL_FILES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"shared media folder {MEDIA_DIR} is absent"))]
    return [pytest.param(p, id=str(p.relative_to(MEDIA_DIR))) for p in REAL_FILES]


def ffmpeg_bin() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str | bytes | os.PathLike[str]) -> bytes:
    """Run bare ffmpeg, return stdout; fail the test with its stderr if it fails."""
    done = subprocess.run([ffmpeg_bin(), "-hide_banner", "-nostdin", "-v", "error", *args], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout


def decode(path: os.PathLike[str] | str, spec: str = "0:a:0") -> np.ndarray:
    """Decode stream `spec` of `path` to float32 (frames, channels) with bare ffmpeg and soundfile."""
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "decoded.wav"
        ffmpeg("-i", b"file:" + os.fsencode(os.path.abspath(path)), "-map", spec, "-c:a", "pcm_f32le", wav)
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    return audio


def decode_frames(path: os.PathLike[str] | str, spec: str = "0:a:0") -> tuple[np.ndarray, list[tuple[int, int]], int]:
    """Decode stream `spec` of `path` with bare ffmpeg, keeping each frame's timestamp (``-copyts``).

    Returns
    -------
    samples : np.ndarray [shape=(frames, channels), dtype=float32]
        Every decoded sample, frame after frame.
    frames : list of (int, int)
        Each frame's timestamp and sample count, in samples (1 / sample rate).
    sample_rate : int
    """
    done = subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-nostdin", "-copyts", "-i", b"file:" + os.fsencode(os.path.abspath(path)), "-map", spec,
         "-af", "asettb=1/sr,ashowinfo", "-c:a", "pcm_f32le", "-f", "f32le", "-"],
        capture_output=True, check=False,
    )
    text = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, text[-3000:]
    found = re.findall(r"\] n:\d+ pts:(-?\d+) .*? channels:(\d+) .*? rate:(\d+) nb_samples:(\d+)", text)
    assert found, f"no audio frames decoded from {path}"
    channels, rate = int(found[0][1]), int(found[0][2])
    samples = np.frombuffer(done.stdout, dtype=np.float32).reshape(-1, channels)
    frames = [(int(pts), int(n)) for pts, _, _, n in found]
    assert sum(n for _, n in frames) == len(samples), f"{path}: frames and samples disagree"
    return samples, frames, rate


def decode_on_timeline(path: os.PathLike[str] | str, *, gap_s: float, spec: str = "0:a:0") -> np.ndarray:
    """:func:`decode_frames`, frames laid end to end, except that a frame more than `gap_s` later
    than the previous one ended starts after that much silence, and one more than `gap_s` earlier
    loses what overlaps."""
    samples, frames, rate = decode_frames(path, spec)
    pieces, used, end = [], 0, frames[0][0]
    for pts, n in frames:
        chunk = samples[used : used + n]
        used += n
        if pts - end > gap_s * rate:
            pieces.append(np.zeros((pts - end, samples.shape[1]), dtype=np.float32))
            end = pts
        elif end - pts > gap_s * rate:
            chunk = chunk[end - pts :]
        pieces.append(chunk)
        end += len(chunk)
    return np.concatenate(pieces)


def packets_md5(path: os.PathLike[str] | str, spec: str) -> str:
    """MD5 of the packets of stream(s) `spec`, copied without decoding (``-c copy -f md5``)."""
    return ffmpeg("-i", path, "-map", spec, "-c", "copy", "-f", "md5", "-").decode().strip()


def sha256(path: os.PathLike[str] | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def aligned_snr_db(reference: np.ndarray, test: np.ndarray, *, max_lag: int = 2048) -> tuple[float, int]:
    """SNR (dB) of `test` against `reference` at the lag (|lag| <= `max_lag` samples) that maximises it.

    Lossy codecs may shift audio by their priming delay; the lag found is returned
    so that tests can bound it too.
    """
    ref = reference.mean(axis=1).astype(np.float64)
    tst = test.mean(axis=1).astype(np.float64)
    core = ref[max_lag : min(len(ref), len(tst)) - max_lag]
    assert len(core) > max_lag, "signals too short to align"
    scores = scipy.signal.correlate(tst[: len(core) + 2 * max_lag], core, mode="valid", method="fft")
    lag = int(np.argmax(scores)) - max_lag
    seg = tst[max_lag + lag : max_lag + lag + len(core)]
    noise = float(np.sum((seg - core) ** 2))
    return 10 * np.log10(float(np.sum(core**2)) / max(noise, 1e-20)), lag
