"""Failures that are not the input's fault: the file stays in the inbox, is retried later, quarantined only at the last attempt.

The failures are real: ``$DESTATIC_FFMPEG`` names a script that kills itself
with SIGKILL (what the kernel's OOM killer does to ffmpeg), or one that hangs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
from processes import all_gone

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _script(folder: Path, body: str) -> Path:
    script = folder / "bin" / "ffmpeg"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def killed_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every ffmpeg call dies of SIGKILL (a transient failure) until the fixture's variable is unset."""
    from destatic.media._ffmpeg import FFMPEG_ENV

    script = _script(tmp_path, "kill -9 $$")
    monkeypatch.setenv(FFMPEG_ENV, str(script))
    return script


def _drop(inbox: Path, relative: str, source: Path) -> Path:
    target = inbox / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if not path.is_dir()) if root.exists() else []


def _note(quarantined: Path) -> dict[str, str]:
    text = quarantined.with_name(quarantined.name + ".error.txt").read_text(encoding="utf-8")
    return dict(line.split(": ", 1) for line in text.splitlines())


def _watch(settings) -> dict[str, dict]:
    from destatic.flows import watch_inbox

    return {row["file"]: row for row in watch_inbox(settings)}


def test_environment_failure_leaves_the_file_in_the_inbox_until_the_last_attempt(
    make_settings, killed_ffmpeg: Path, speech_wav: Path, denoise_runs, task_runs
) -> None:
    from destatic.inbox import CLAIM_DIR, FAILURES_DIR, failure_record

    settings = make_settings(watch={"max_attempts": 2, "retry_after_s": 0}, runtime={"retries": 1})
    inbox, quarantine = settings.paths.inbox, settings.paths.quarantine
    good = _drop(inbox, "sub/talk.wav", speech_wav)
    (inbox / "empty.wav").write_bytes(b"")

    rows = _watch(settings)

    assert set(rows) == {"sub/talk.wav", "empty.wav"}
    row = rows["sub/talk.wav"]
    assert row["status"] == "failed" and "killed by signal SIGKILL" in row["reason"], row
    assert "left in the inbox (failure 1 of 2)" in row["reason"], row
    assert good.read_bytes() == speech_wav.read_bytes(), "the original is back in the inbox, untouched"
    assert _files(quarantine) == ["empty.wav", "empty.wav.error.txt"], "bad input is still quarantined at once"
    assert "empty" in _note(quarantine / "empty.wav")["reason"]
    assert _files(settings.paths.outbox) == [], "no output, not even a partial one"
    assert _files(inbox / CLAIM_DIR) == []
    record = failure_record(inbox, Path("sub/talk.wav"))
    assert record is not None and (record.failures, record.step) == (1, "extract") and "SIGKILL" in record.reason
    assert failure_record(inbox, Path("empty.wav")) is None
    (run,) = [run for run in denoise_runs(inbox / CLAIM_DIR, under=True) if run.name == "denoise-talk.wav"]
    assert run.state.is_failed() and "killed by signal SIGKILL" in run.state.message
    (extract,) = task_runs(run.id)["extract_audio"]
    assert extract.run_count == 2, "the step is still retried within the run"

    rows = _watch(settings)

    row = rows["sub/talk.wav"]
    assert row["status"] == "failed" and "moved to quarantine after 2 failures" in row["reason"], row
    assert _files(inbox) == [] and not good.exists()
    assert (quarantine / "sub" / "talk.wav").read_bytes() == speech_wav.read_bytes()
    note = _note(quarantine / "sub" / "talk.wav")
    assert note["step"] == "extract"
    assert note["reason"].startswith("failed 2 times for reasons other than its content (watch.max_attempts=2); last: ")
    assert "killed by signal SIGKILL" in note["reason"]
    assert _files(inbox / FAILURES_DIR) == [], "the count goes with the file"


def test_a_fault_in_destatic_inside_a_step_never_quarantines_the_file(
    make_settings, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that calls the DSP wrongly (n_jobs=0, as a bug in the subtract step would) fails the run loudly; the good
    file stays in the inbox, even past its last attempt (it was quarantined at once as "bad input" before)."""
    from destatic import dsp
    from destatic.inbox import failure_record

    monkeypatch.setattr(dsp, "jobs_for_length", lambda *_args, **_kwargs: 0)  # the fault, in the flow's own process
    settings = make_settings(
        watch={"max_attempts": 1, "retry_after_s": 0}, runtime={"retries": 0, "isolate_steps": False},
        suppression={"method": "logmmse"},
    )
    inbox = settings.paths.inbox
    good = _drop(inbox, "talk.wav", speech_wav)

    for attempt in (1, 2):
        row = _watch(settings)["talk.wav"]

        assert row["status"] == "failed" and "n_jobs=0 must be None (automatic) or an integer >= 1" in row["reason"], row
        assert "never quarantined for it" in row["reason"] and "cannot be cleaned" not in row["reason"], row
        assert good.read_bytes() == speech_wav.read_bytes(), "the original is back in the inbox, untouched"
        assert _files(settings.paths.quarantine) == [] and _files(settings.paths.outbox) == []
        record = failure_record(inbox, Path("talk.wav"))
        assert record is not None and (record.failures, record.step) == (attempt, "subtract")


def test_success_after_a_failure_clears_the_count(
    make_settings, killed_ffmpeg: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from destatic.inbox import FAILURES_DIR, failure_record
    from destatic.media._ffmpeg import FFMPEG_ENV

    settings = make_settings(watch={"retry_after_s": 0}, runtime={"retries": 0})
    inbox = settings.paths.inbox
    _drop(inbox, "talk.wav", speech_wav)
    assert _watch(settings)["talk.wav"]["status"] == "failed"
    assert failure_record(inbox, Path("talk.wav")).failures == 1
    monkeypatch.delenv(FFMPEG_ENV)

    row = _watch(settings)["talk.wav"]

    assert row["status"] == "done", row
    assert (settings.paths.done / "talk.wav").read_bytes() == speech_wav.read_bytes()
    assert (settings.paths.outbox / "talk.wav").is_file()
    assert _files(inbox) == [] and _files(settings.paths.quarantine) == []
    assert _files(inbox / FAILURES_DIR) == [], "the count is cleared by the success"


def test_failed_file_is_left_alone_for_retry_after_s(make_settings, killed_ffmpeg: Path, speech_wav: Path) -> None:
    from destatic.inbox import failure_record

    patient = make_settings(watch={"retry_after_s": 3600}, runtime={"retries": 0})
    inbox = patient.paths.inbox
    _drop(inbox, "talk.wav", speech_wav)
    assert "failure 1 of 3" in _watch(patient)["talk.wav"]["reason"]

    assert _watch(patient) == {}, "taken again before retry_after_s has passed"
    assert (inbox / "talk.wav").is_file() and failure_record(inbox, Path("talk.wav")).failures == 1

    # The wait is counted from the last failure: with a shorter one the file is due now.
    impatient = make_settings(watch={"retry_after_s": 0.5}, runtime={"retries": 0})
    time.sleep(0.5)
    assert "failure 2 of 3" in _watch(impatient)["talk.wav"]["reason"]
    assert failure_record(inbox, Path("talk.wav")).failures == 2


def test_new_version_of_a_failed_file_starts_from_zero_and_stale_records_go(
    make_settings, killed_ffmpeg: Path, speech_wav: Path
) -> None:
    from destatic.inbox import FAILURES_DIR, STALE_RECORD_S, failure_record

    settings = make_settings(watch={"retry_after_s": 0}, runtime={"retries": 0})
    inbox = settings.paths.inbox
    talk = _drop(inbox, "talk.wav", speech_wav)
    _watch(settings)
    (old_record,) = (inbox / FAILURES_DIR).iterdir()
    talk.write_bytes(talk.read_bytes() + b"\0\0")  # a new version: new size and mtime
    assert failure_record(inbox, Path("talk.wav")) is None
    assert "failure 1 of 3" in _watch(settings)["talk.wav"]["reason"]

    assert old_record.exists(), "a record is kept for an hour after its file has left"
    long_ago = time.time() - STALE_RECORD_S - 1
    os.utime(old_record, (long_ago, long_ago))
    _watch(settings)
    assert not old_record.exists()
    assert failure_record(inbox, Path("talk.wav")).failures == 2, "the record of a file still there is kept"
    assert json.loads(next((inbox / FAILURES_DIR).iterdir()).read_text())["file"] == "talk.wav"


def test_hanging_ffmpeg_is_killed_and_its_input_quarantined_once(
    make_settings, speech_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denoise_runs, task_runs
) -> None:
    from destatic.inbox import CLAIM_DIR
    from destatic.media._ffmpeg import FFMPEG_ENV

    pids = tmp_path / "pids"
    script = _script(tmp_path, f"echo $$ >> '{pids}'\nsleep 600 &\necho $! >> '{pids}'\nwait")
    monkeypatch.setenv(FFMPEG_ENV, str(script))
    settings = make_settings(runtime={"ffmpeg_timeout_s": 1.0, "retries": 2})
    _drop(settings.paths.inbox, "talk.wav", speech_wav)

    row = _watch(settings)["talk.wav"]

    assert row["status"] == "failed" and "ffmpeg did not finish within 1 s" in row["reason"], row
    quarantined = settings.paths.quarantine / "talk.wav"
    assert quarantined.read_bytes() == speech_wav.read_bytes()
    assert _note(quarantined)["step"] == "extract" and "did not finish within 1 s" in _note(quarantined)["reason"]
    (run,) = denoise_runs(settings.paths.inbox / CLAIM_DIR, under=True)
    (extract,) = task_runs(run.id)["extract_audio"]
    assert extract.run_count == 1, "a hang is blamed on the input: not retried"
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 2
    assert all_gone(started), "the fake ffmpeg or its child is still running"


@pytest.mark.parametrize(
    ("group", "values", "field"),
    [
        ("watch", {"max_attempts": 0}, "watch.max_attempts=0"),
        ("watch", {"retry_after_s": -1}, "watch.retry_after_s=-1"),
        ("runtime", {"ffmpeg_timeout_s": 0}, "runtime.ffmpeg_timeout_s=0"),
    ],
)
def test_bad_failure_settings_are_named(group: str, values: dict, field: str) -> None:
    from destatic.errors import ParameterError
    from destatic.settings import load_settings

    with pytest.raises(ParameterError, match=field.replace(".", r"\.")):
        load_settings(**{group: values})
