"""The ffmpeg watchdog: a call that runs past its time limit is killed, with everything it started."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from processes import all_gone

from destatic import media
from destatic.errors import BadInputError, ParameterError, TransientError
from destatic.media import _ffmpeg


def _hanging_ffmpeg(folder: Path) -> tuple[Path, Path]:
    """A fake ffmpeg that starts a child and waits for it forever; it writes both PIDs to a file."""
    pids = folder / "pids"
    script = folder / "ffmpeg"
    script.write_text(f"#!/bin/sh\necho $$ > '{pids}'\nsleep 600 &\necho $! >> '{pids}'\nwait\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, pids


def _wait_for_pids(pids: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = pids.read_text().split() if pids.exists() else []
        if len(lines) >= count:
            return [int(line) for line in lines]
        time.sleep(0.02)
    raise AssertionError(f"the fake ffmpeg wrote no PIDs to {pids}")


def test_hanging_ffmpeg_is_killed_with_its_children_and_the_input_blamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("the process tree is read from /proc (Linux)")
    source = tmp_path / "in.wav"
    sf.write(source, rng.standard_normal(8000).astype(np.float32) * 0.1, 8000)
    script, pids = _hanging_ffmpeg(tmp_path)
    monkeypatch.setenv(_ffmpeg.FFMPEG_ENV, str(script))
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    with _ffmpeg.time_limit(1.0), pytest.raises(BadInputError, match=r"ffmpeg did not finish within 1 s") as caught:
        media.extract_audio(source, out / "a.wav")
    assert time.monotonic() - started < 1.0 + _ffmpeg.KILL_GRACE_S
    assert Path(caught.value.path) == source
    assert all_gone(_wait_for_pids(pids, 2)), "the fake ffmpeg or its child outlived the watchdog"
    assert list(out.iterdir()) == []


def test_call_without_input_that_hangs_is_transient(tmp_path: Path) -> None:
    script, pids = _hanging_ffmpeg(tmp_path)
    with pytest.raises(TransientError, match=r"did not answer within 0.5 s"):
        _ffmpeg.run([str(script)], source=None, timeout_s=0.5)
    assert all_gone(_wait_for_pids(pids, 2))


def test_call_within_its_limit_returns_its_output() -> None:
    done = _ffmpeg.run([_ffmpeg.ffmpeg_exe(), "-hide_banner", "-version"], source=None, timeout_s=60)
    assert done.returncode == 0 and done.stdout.startswith(b"ffmpeg version")


def test_time_limit_grows_with_the_input_and_can_be_fixed(tmp_path: Path) -> None:
    big = tmp_path / "big.mkv"
    with open(big, "wb") as handle:
        handle.truncate(3 * 2**20)
    floor, per_mib = _ffmpeg.TIME_LIMIT_FLOOR_S, _ffmpeg.TIME_LIMIT_S_PER_MIB
    assert _ffmpeg.time_limit_for(big) == pytest.approx(floor + 3 * per_mib)
    assert _ffmpeg.time_limit_for(tmp_path / "missing.wav") == floor
    assert _ffmpeg.time_limit_for(None) == floor
    with _ffmpeg.time_limit(7.5):
        assert _ffmpeg.time_limit_for(big) == 7.5
        with _ffmpeg.time_limit(None):
            assert _ffmpeg.time_limit_for(big) == pytest.approx(floor + 3 * per_mib)
    assert _ffmpeg.time_limit_for(big) == pytest.approx(floor + 3 * per_mib)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ParameterError, match=f"seconds={bad!r} must be a positive number"), _ffmpeg.time_limit(bad):
            pass


def test_real_failure_without_input_is_transient() -> None:
    with pytest.raises(TransientError, match="ffmpeg failed with status"):
        _ffmpeg.run([_ffmpeg.ffmpeg_exe(), "-hide_banner", "-no-such-option"], source=None)
