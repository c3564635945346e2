"""Judge outputs with bare ffmpeg, not with the code under test."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import numpy as np

from hostile import ffmpeg_exe


@dataclass(frozen=True)
class Decoded:
    """An audio stream decoded to the end: its samples and whatever ffmpeg complained about."""

    samples: np.ndarray
    errors: str

    @property
    def frames(self) -> int:
        return self.samples.shape[0]


def decode_audio(path: os.PathLike[str] | str, *, channels: int | None = None) -> Decoded:
    """Decode the first audio stream of `path` completely to float32 (frames, channels)."""
    remix = ["-ac", str(channels)] if channels else []
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", b"file:" + os.fsencode(os.path.abspath(path)),
         "-map", "0:a:0", *remix, "-c:a", "pcm_f32le", "-f", "f32le", "-"],
        capture_output=True,
        check=False,
    )
    errors = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        errors = errors or f"ffmpeg exit status {done.returncode}"
    samples = np.frombuffer(done.stdout, np.float32)
    width = channels or 1
    return Decoded(samples[: samples.size // width * width].reshape(-1, width), errors)
