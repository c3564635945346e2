"""The work folder's size budget: what is evicted first, what a run keeps, what a full disk does."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from destatic import cache

CODE = {"extract": "e", "subtract": "5", "inverse": "1", "remux": "4", "profile": "f", "plots": "c"}


def _key(digit: str, step: str) -> str:
    return (digit + CODE[step]) * 10


def _artifact(folder: Path, step: str, key: str, size: int, *, age_s: float, suffix: str = ".bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / cache.artifact_name(step, key, suffix)
    path.write_bytes(b"x" * size)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def _work(tmp_path: Path) -> Path:
    """Two files' folders: an old one and a recent one, each with every kind of artifact, and their result records."""
    work = tmp_path / "work"
    for name, age, digit in (("old-111", 3600, "1"), ("new-222", 60, "2")):
        folder = work / name
        for step, size in (("extract", 4000), ("subtract", 5000), ("inverse", 4000), ("remux", 1000), ("profile", 50), ("plots", 80)):
            key = _key(digit, step)
            _artifact(folder, step, key, size, age_s=age)
            (work / cache.RESULTS).mkdir(parents=True, exist_ok=True)
            (work / cache.RESULTS / key).write_bytes(b"r" * 10)
        _artifact(folder, "plots", _key(digit, "plots"), 70, age_s=age, suffix="-profile.png")
        (folder / "report.md").write_text("report")
        os.utime(folder / "report.md", (time.time() - age, time.time() - age))
    return work


def _left(work: Path) -> set[str]:
    return {f"{entry.folder.name}/{entry.step}" for entry in cache.entries(work)}


def test_gains_go_first_then_big_intermediates_oldest_first_then_tiny_then_folders(tmp_path: Path) -> None:
    work = _work(tmp_path)
    total = sum(entry.size for entry in cache.entries(work))
    plots = next(entry for entry in cache.entries(work) if entry.step == "plots" and entry.folder.name == "old-111")
    assert len(plots.files) == 3, "the plot's JSON, its PNG and its result record are one entry"

    pruned = cache.prune(work, total - 9000)  # the two gains files are enough
    assert {(entry.folder.name, entry.step) for entry in pruned.removed} == {("old-111", "subtract"), ("new-222", "subtract")}
    assert pruned.size_after <= total - 9000 and pruned.size_after == sum(entry.size for entry in cache.entries(work))
    assert not (work / cache.RESULTS / _key("1", "subtract")).exists(), "an evicted step's result record goes with it"

    cache.prune(work, pruned.size_after - 4000)  # one more big intermediate: the old file's, the least recently used
    assert "old-111/extract" not in _left(work) and "new-222/extract" in _left(work)

    cache.prune(work, 460)  # what the tiny entries and the reports of both files hold
    assert _left(work) == {"old-111/profile", "old-111/plots", "old-111/folder", "new-222/profile", "new-222/plots", "new-222/folder"}

    cache.prune(work, 0)
    assert _left(work) == set() and not (work / "old-111").exists()
    assert not any((work / cache.RESULTS).iterdir())


def test_a_folder_in_use_is_never_evicted(tmp_path: Path) -> None:
    work = _work(tmp_path)
    with cache.in_use(work / "new-222"):
        pruned = cache.clear(work)
        assert {entry.folder.name for entry in pruned.removed} == {"old-111"}
        assert {entry.split("/")[0] for entry in _left(work)} == {"new-222"}
    assert {entry.folder.name for entry in cache.clear(work).removed} == {"new-222"}


def test_used_entries_are_kept_longest(tmp_path: Path) -> None:
    work = _work(tmp_path)
    cache.mark_used([work / "old-111" / cache.artifact_name("extract", _key("1", "extract"), ".bin")])
    cache.prune(work, sum(entry.size for entry in cache.entries(work)) - 9000 - 4000)
    assert "old-111/extract" in _left(work) and "old-111/inverse" not in _left(work)


def test_the_default_budget_is_5_gb_or_a_tenth_of_the_room(tmp_path: Path) -> None:
    expected = min(5 * 1024**3, 0.1 * shutil.disk_usage(tmp_path).free)
    assert cache.budget_bytes(tmp_path / "not-yet", None) == pytest.approx(expected, rel=0.01)
    assert cache.budget_bytes(tmp_path, 0.5) == 512 * 1024**2


pipeline = pytest.mark.usefixtures("prefect_harness")


def _sizes(work: Path) -> int:
    return sum(entry.size for entry in cache.entries(work))


@pipeline
def test_runs_keep_the_budget_and_evicted_steps_come_back_the_same(make_settings, short_video: Path, speech_wav: Path, tmp_path: Path) -> None:
    from destatic.flows import denoise_file

    settings = make_settings(cache={"max_gb": 1.5 / 1024})  # 1.5 MB: less than one 3 s stereo clip's intermediates
    first = denoise_file(short_video, settings, output=tmp_path / "out" / "talk.mpg")
    work = settings.paths.work.resolve()
    assert _sizes(work) <= 1.5 * 1024**2
    assert list(work.glob("*/report.md")), "the report is kept"
    denoise_file(speech_wav, settings, output=tmp_path / "out" / "speech.flac")
    assert _sizes(work) <= 1.5 * 1024**2

    before = first.read_bytes()
    first.unlink()
    again = denoise_file(short_video, settings, output=tmp_path / "out" / "talk.mpg")
    assert again.read_bytes() == before


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pipeline
def test_a_full_disk_is_met_by_evicting_and_trying_once_more(make_settings, media_dir: Path, tmp_path: Path) -> None:
    """The work folder on a 5 MB file system: the first clip's intermediates fill it; the second clip evicts them and succeeds."""
    from destatic.flows import denoise_file

    clips = [tmp_path / "in" / name for name in ("a.mpg", "b.mpg")]
    clips[0].parent.mkdir(parents=True)
    for clip, name in zip(clips, ("bbaf2n.mpg", "lbax4n.mpg")):
        shutil.copyfile(media_dir / "video" / name, clip)
    with _tmpfs(tmp_path / "small", "5m") as small:
        settings = make_settings(paths={"work": small / "work"}, cache={"max_gb": 1.0}, runtime={"retries": 0})
        denoise_file(clips[0], settings, output=tmp_path / "out" / "a.mpg")
        held = _sizes(small / "work")
        assert held > 2.5 * 1024**2, "the first clip's intermediates take most of the disk"
        output = denoise_file(clips[1], settings, output=tmp_path / "out" / "b.mpg")
        assert output.is_file()
        assert not any("a-" in entry.folder.name and entry.step == "extract" for entry in cache.entries(small / "work"))
        audio, rate = sf.read(_decoded(output, tmp_path), dtype="float32")
        assert rate == 44100 and np.isfinite(audio).all() and audio.shape[0] > 2 * rate


def _decoded(path: Path, tmp_path: Path) -> Path:
    from destatic import media

    wav = tmp_path / f"{path.stem}-decoded.wav"
    media.extract_audio(path, wav)
    return wav


def test_a_request_answered_before_is_answered_again_without_prefect(tmp_path: Path, speech_wav: Path) -> None:
    """The second identical run delivers from the work folder: it works with the Prefect API unreachable."""
    import sys

    work = tmp_path / "work"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    command = [sys.executable, "-m", "destatic", "run", str(speech_wav), "-o", str(tmp_path / "out.flac"), "--work", str(work)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out.flac").read_bytes()
    (tmp_path / "out.flac").unlink()
    offline = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing listens there
    again = subprocess.run(command, env=offline, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out.flac").read_bytes() == before
    assert again.stdout.strip() == str(tmp_path / "out.flac")
    changed = subprocess.run([*command, "--reduction-db", "12"], env=offline, capture_output=True, text=True, timeout=120)
    assert changed.returncode != 0, "another setting is another request: it needs the flow (and the API)"
    assert "Traceback" not in changed.stderr and "http://127.0.0.1:9/api (PREFECT_API_URL) does not answer" in changed.stdout + changed.stderr
    for encoded in work.glob("*/export-*.flac"):
        encoded.unlink()
    evicted = subprocess.run(command, env=offline, capture_output=True, text=True, timeout=120)
    assert evicted.returncode != 0, "an evicted artifact needs the flow again"
