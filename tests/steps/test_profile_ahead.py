"""The profile begun ahead (``destatic run`` measures it in the DSP child while Prefect loads): the step's own target, taken over, never half left."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from destatic import tasks
from destatic.dsp import NoiseProfile
from destatic.settings import load_settings
from destatic.steps import ahead, extract, profile, warming


def _settings(tmp_path: Path, **groups):
    return load_settings(paths={"work": tmp_path / "work"}, **groups)


def _task_target(audio, work_dir: Path, given: dict, noise_audio=None) -> Path:
    """The profile task's artifact for these arguments, bound as Prefect binds them."""
    bound = inspect.signature(tasks.profile_noise.fn).bind(audio, work_dir, noise_audio=noise_audio, isolated=True, **given)
    bound.apply_defaults()
    return tasks._PROFILE.artifact(bound.arguments)


def test_the_target_made_ahead_is_the_tasks(short_video: Path, tmp_path: Path) -> None:
    """Without Prefect, the same name as the task's key gives: for a measured profile, a saved one, and a noise file's."""
    video, work = short_video.absolute(), tmp_path / "work"
    audio = extract.run(video, extract.target_in(work, video))
    saved = tmp_path / "saved.npz"
    saved.write_bytes(b"a saved profile, counted by its bytes")
    for groups in ({}, {"noise": {"mode": "head"}}, {"noise": {"profile_file": saved}}, {"noise": {"mode": "file", "file": video}}):
        given = profile.arguments(_settings(tmp_path, **groups))
        noise_audio = audio if given["noise_file"] is not None else None
        assert profile.target_in(work, audio, given, noise_audio=noise_audio) == _task_target(audio, work, given, noise_audio), groups
    assert len({profile.target_in(work, audio, profile.arguments(_settings(tmp_path, **groups))) for groups in ({}, {"noise": {"mode": "head"}})}) == 2


def test_the_profile_begun_ahead_is_taken_over_once(short_video: Path, tmp_path: Path) -> None:
    """start_ahead measures the profile in the DSP child; the step takes that record (the same profile as its own), once."""
    video = short_video.absolute()
    settings = _settings(tmp_path)
    work = tmp_path / "work" / "talk"
    warming.start_ahead(settings, video, work)
    assert ahead.pending("profile", work)
    audio = extract.run(video, extract.target_in(work, video))
    given = profile.arguments(settings)
    target = profile.target_in(work, audio, given)
    record = ahead.taken("profile", target)
    assert record is not None and record.path == target and target.is_file()
    assert not ahead.pending("profile", work) and ahead.taken("profile", target) is None, "taken once only"
    own = profile.run(audio, tmp_path / "own.npz", **given)
    assert own.profile == record.profile
    np.testing.assert_array_equal(own.profile.power, record.profile.power)


def test_another_targets_work_is_left_for_its_step(short_video: Path, tmp_path: Path) -> None:
    """A step asking for another target of the same folder (a noise file's extraction) neither gets nor drops the work."""
    video = short_video.absolute()
    work = tmp_path / "work"
    extract.start_ahead(video, work)
    assert ahead.taken("extract", work / "extract-another.wav") is None
    target = extract.target_in(work, video)
    assert ahead.taken("extract", target) is not None


def test_a_run_that_exits_at_once_leaves_nothing_half_made(short_video: Path, tmp_path: Path) -> None:
    """Begun ahead, then the process exits (as when the server does not answer): what was begun is finished, nothing else is left."""
    work = tmp_path / "work"
    probe = textwrap.dedent(
        f"""
        from pathlib import Path
        from destatic.settings import load_settings
        from destatic.steps import warming
        warming.start_ahead(load_settings(paths={{"work": Path({str(work)!r})}}), Path({str(short_video.absolute())!r}), Path({str(work)!r}))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    files = sorted(path for path in work.rglob("*") if path.is_file())
    wavs = [path for path in files if path.name.startswith("extract-") and path.suffix == ".wav"]
    profiles = [path for path in files if path.name.startswith("profile-") and path.suffix == ".npz"]
    assert len(wavs) == 1 and sorted(wavs + profiles) == files, f"partial or stray files: {files}"
    for path in profiles:  # begun before the exit: finished, whole
        assert NoiseProfile.load(path).bins > 0
