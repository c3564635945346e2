"""The inbox watcher: stable files, atomic claims, outbox mirror, done/, quarantine, two watchers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def _drop(inbox: Path, relative: str, source: Path) -> Path:
    target = inbox / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def test_find_ready_waits_for_stable_files_and_skips_hidden(tmp_path: Path) -> None:
    from destatic.inbox import find_ready

    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / ".hidden").mkdir()
    for name in ("old.wav", "sub/old.mp4", "fresh.wav", "notes.txt", ".dot.wav", ".hidden/x.wav"):
        (inbox / name).write_bytes(b"x")
    long_ago = time.time() - 60
    for name in ("old.wav", "sub/old.mp4", "notes.txt", ".dot.wav", ".hidden/x.wav"):
        os.utime(inbox / name, (long_ago, long_ago))
    assert find_ready(inbox, stable_s=30) == [Path("old.wav"), Path("sub/old.mp4")]
    assert Path("fresh.wav") in find_ready(inbox, stable_s=0)


def test_claim_is_exclusive_and_moves_the_file_out_of_the_inbox(tmp_path: Path) -> None:
    from destatic.inbox import CLAIM_DIR, claim, find_ready

    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    (inbox / "a" / "clip.wav").write_bytes(b"data")
    first = claim(inbox, Path("a/clip.wav"))
    assert first is not None and first.path.read_bytes() == b"data"
    assert first.path.is_relative_to(inbox / CLAIM_DIR)
    assert claim(inbox, Path("a/clip.wav")) is None
    assert find_ready(inbox, stable_s=0) == []


def _claimed_clip(tmp_path: Path):
    """An inbox holding clip.wav, claimed by this process: the inbox and the claim."""
    from destatic.inbox import claim

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "clip.wav").write_bytes(b"data")
    taken = claim(inbox, Path("clip.wav"))
    assert taken is not None
    return inbox, taken


def test_claims_of_a_dead_process_are_put_back(tmp_path: Path) -> None:
    from destatic.inbox import release_stale_claims
    from destatic.flows.watch import run_is_over

    inbox, taken = _claimed_clip(tmp_path)
    assert release_stale_claims(inbox, run_is_over=run_is_over) == []  # its owner, this process, is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = json.loads((taken.folder / "owner.json").read_text())
    (taken.folder / "owner.json").write_text(json.dumps({**owner, "pid": int(dead.stdout)}))
    assert release_stale_claims(inbox, run_is_over=run_is_over) == [Path("clip.wav")]
    assert (inbox / "clip.wav").read_bytes() == b"data"
    assert not taken.folder.exists()


def test_a_claim_whose_pid_another_process_took_is_put_back(tmp_path: Path) -> None:
    """PIDs are reused: a claim whose PID runs now, but in a process started at another time, is stale."""
    from destatic.flows.watch import run_is_over
    from destatic.inbox import release_stale_claims

    inbox, taken = _claimed_clip(tmp_path)
    owner = json.loads((taken.folder / "owner.json").read_text())
    assert owner["pid"] == os.getpid() and isinstance(owner["started"], int)
    (taken.folder / "owner.json").write_text(json.dumps({**owner, "started": owner["started"] + 1}))
    assert release_stale_claims(inbox, run_is_over=run_is_over) == [Path("clip.wav")]
    assert (inbox / "clip.wav").read_bytes() == b"data"


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("concurrency", [1, 2])
def test_watch_processes_mirrors_and_goes_on_past_bad_files(
    concurrency: int, make_settings, speech_wav: Path, rng: np.random.Generator
) -> None:
    from prefect.artifacts import Artifact

    from destatic.flows import watch_inbox

    settings = make_settings(watch={"concurrency": concurrency})
    inbox = settings.paths.inbox
    _drop(inbox, "a.wav", speech_wav)
    _drop(inbox, "deep/er/b.wav", speech_wav)
    (inbox / "broken.mp4").write_bytes(rng.bytes(2048))
    rows = watch_inbox(settings)
    by_file = {row["file"]: row for row in rows}
    assert set(by_file) == {"a.wav", "deep/er/b.wav", "broken.mp4"}
    assert by_file["a.wav"]["status"] == by_file["deep/er/b.wav"]["status"] == "done"
    assert by_file["broken.mp4"]["status"] == "failed" and by_file["broken.mp4"]["reason"]

    for relative in ("a.wav", "deep/er/b.wav"):
        out, rate = sf.read(settings.paths.outbox / relative)
        assert rate == sf.info(str(speech_wav)).samplerate and len(out) == sf.info(str(speech_wav)).frames
        assert (settings.paths.done / relative).read_bytes() == speech_wav.read_bytes()
    assert (settings.paths.quarantine / "broken.mp4").is_file()
    assert "step: extract" in (settings.paths.quarantine / "broken.mp4.error.txt").read_text()
    assert [p for p in inbox.rglob("*") if not p.is_dir()] == [], "files left in the inbox or its claim folder"

    table = Artifact.get("destatic-watch")
    assert table is not None and table.type == "table"
    assert {row["file"] for row in json.loads(table.data)} == set(by_file)
    assert watch_inbox(settings) == []


@pytest.mark.usefixtures("prefect_harness")
def test_two_watchers_process_each_file_exactly_once(make_settings, denoise_runs, speech_wav: Path, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    settings = make_settings()
    names = [f"f{i}.wav" for i in range(4)]
    for name in names:
        _drop(settings.paths.inbox, name, speech_wav)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "DESTATIC_PATHS__OUTBOX": str(settings.paths.outbox),
        "DESTATIC_PATHS__WORK": str(settings.paths.work),
        "DESTATIC_PATHS__DONE": str(settings.paths.done),
        "DESTATIC_PATHS__QUARANTINE": str(settings.paths.quarantine),
        "DESTATIC_WATCH__STABLE_S": "0",
    }
    command = [sys.executable, "-m", "destatic", "watch", str(settings.paths.inbox), "--once"]
    watchers = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [watcher.communicate(timeout=300)[0] for watcher in watchers]
    assert [watcher.returncode for watcher in watchers] == [0, 0], logs
    assert sorted(p.name for p in settings.paths.outbox.iterdir()) == names
    assert sorted(p.name for p in settings.paths.done.iterdir()) == names
    claimed = settings.paths.inbox / ".processing"
    runs = denoise_runs(claimed, under=True)
    assert len(runs) == len(names), [run.parameters for run in runs]
    assert sorted(run.name.removeprefix("denoise-") for run in runs) == names


def test_partials_of_a_killed_process_are_deleted_and_others_kept(tmp_path: Path) -> None:
    from destatic.inbox import remove_dead_partials
    from destatic.media.atomic import HOST_TAG, partial_owner, partial_path

    outbox, work = tmp_path / "outbox", tmp_path / "work" / "clip-0123"
    outbox.mkdir()
    work.mkdir(parents=True)
    writer = (
        "import sys, time\n"
        "from destatic.media import atomic_output\n"
        "with atomic_output(sys.argv[1]) as partial:\n"
        "    partial.write_bytes(b'half')\n"
        "    print(partial, flush=True)\n"
        "    time.sleep(60)\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", writer, str(outbox / "a b.wav")], stdout=subprocess.PIPE, text=True)
    orphan = Path(killed.stdout.readline().rstrip("\n"))
    killed.kill()
    killed.wait()
    assert orphan.exists() and partial_owner(orphan) == killed.pid
    dead_in_work = work / partial_path(work / "cleaned.wav").name.replace(f"-{os.getpid()}.", f"-{killed.pid}.")
    dead_in_work.write_bytes(b"half")
    mine = partial_path(outbox / "live.mp4")
    mine.write_bytes(b"being written")
    other_host = "0" * 8 if HOST_TAG != "0" * 8 else "1" * 8
    elsewhere = outbox / orphan.name.replace(f".{HOST_TAG}-", f".{other_host}-")  # another host's live writer, same PID
    lookalikes = [outbox / ".x.partial.wav", outbox / f".x.{HOST_TAG}-{killed.pid}-zzzzzzzz.partial.wav", outbox / "done.wav", elsewhere]
    for path in lookalikes:
        path.write_bytes(b"keep")

    assert sorted(remove_dead_partials(outbox, work.parent)) == sorted([orphan, dead_in_work])
    assert not orphan.exists() and not dead_in_work.exists()
    assert mine.exists() and all(path.exists() for path in lookalikes)
    assert remove_dead_partials(outbox, work.parent) == []


def test_a_partial_whose_pid_another_process_took_is_deleted(tmp_path: Path) -> None:
    """PIDs are reused: a name whose PID runs now, but started at another time than the writer, is a leftover."""
    from destatic.inbox import remove_dead_partials
    from destatic.media.atomic import HOST_TAG, partial_path, process_start

    started = process_start(os.getpid())
    assert started is not None
    mine = partial_path(tmp_path / "live.wav")
    assert f"-{os.getpid()}.{started}-" in mine.name
    reused = tmp_path / mine.name.replace(f"-{os.getpid()}.{started}-", f"-{os.getpid()}.{started + 1}-")
    older_format = tmp_path / f".old.{HOST_TAG}-{os.getpid()}-0123abcd.partial.wav"  # no start time: the PID decides
    for path in (mine, reused, older_format):
        path.write_bytes(b"half")
    assert remove_dead_partials(tmp_path) == [reused]
    assert mine.exists() and older_format.exists()


def test_partial_name_carries_the_pid_within_name_max(tmp_path: Path) -> None:
    from destatic.media.atomic import partial_owner, partial_path

    for name in ("x.wav", "n" * 251 + ".wav", "é" * 120 + ".flac", "no-suffix"):
        partial = partial_path(tmp_path / name)
        assert len(os.fsencode(partial.name)) <= 255 and partial.name.endswith(".partial" + Path(name).suffix)
        assert partial_owner(partial) == os.getpid()
    assert partial_owner(tmp_path / "x.wav") is None
