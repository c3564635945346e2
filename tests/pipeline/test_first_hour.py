"""What a new user meets in the first hour (issue 32), run as they would run it: the real command, a real background server.

Every command destatic prints is run as printed; nothing is written under the home folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _environment(tmp_path: Path) -> dict[str, str]:
    """A user with an empty home folder, no PREFECT_HOME and no PREFECT_API_URL; caches and state outside the home."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "DESTATIC_RUNTIME__SERVER": "background", "COLUMNS": "80"}
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "MPLCONFIGDIR"):
        env.pop(name, None)
    return env


def _destatic(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`command` as pasted into a shell: ``destatic`` is this Python's, every other word as written."""
    if command[0] == "destatic":
        command = [sys.executable, "-m", "destatic", *command[1:]]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _pasted(text: str, pattern: str) -> list[str]:
    """The command a message shows between backticks (or after `pattern`), split as a shell would."""
    found = re.search(pattern, " ".join(text.split()))
    assert found is not None, f"no {pattern!r} in {text!r}"
    return shlex.split(found.group(1))


@pytest.mark.slow  # about 2 minutes: a dozen commands, a server, a worker
def test_printed_prefect_commands_work_when_pasted_and_nothing_lands_in_home(tmp_path: Path, speech_wav: Path) -> None:
    env = _environment(tmp_path)
    bad = speech_wav.with_name("bad.mp4")
    bad.write_bytes(b"\0" * 4096)
    try:
        failed = _destatic(["destatic", "run", str(bad)], env, tmp_path)
        assert failed.returncode == 1, failed.stderr
        done = _destatic(["destatic", "run", str(speech_wav)], env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert list((tmp_path / "home").iterdir()) == [], "a command wrote under the home folder"
        results = tmp_path / "cache" / "destatic" / "work" / "results"
        assert len(list(results.iterdir())) > 1, "Prefect's records (the failure's too) belong in the work folder"

        shown = _destatic(["destatic", "artifacts", str(speech_wav)], env, tmp_path)
        assert shown.returncode == 0, shown.stderr
        inspect = _pasted(shown.stdout, r"\((destatic prefect artifact inspect [^)]+)\)")
        answer = _destatic(inspect, env, tmp_path)
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert inspect[-1] in answer.stdout and "report of speech.wav" in answer.stdout

        inbox = tmp_path / "inbox"
        inbox.mkdir()
        refused = _destatic(["destatic", "deploy", "--pool", "mine", str(inbox)], env, tmp_path)
        assert refused.returncode == 2 and "work pool 'mine' does not exist" in refused.stderr, refused.stderr
        created = _destatic(_pasted(refused.stderr, r"`(destatic prefect work-pool create [^`]+)`"), env, tmp_path)
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = _destatic(["destatic", "deploy", "--pool", "mine", str(inbox)], env, tmp_path)
        assert deployed.returncode == 0, deployed.stderr
        assert "denoise-file/destatic" in deployed.stdout

        other = _destatic(["destatic", "deploy", "--pool", "made-here", "--create-pool", "--name", "other", str(inbox)], env, tmp_path)
        assert other.returncode == 0, other.stderr
        worker_command = _pasted(other.stderr, r"`(PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 destatic prefect worker start [^`]+)`")
        assert worker_command[-2:] == ["--pool", "made-here"]
        worker_env = {**env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
        worker = subprocess.Popen([sys.executable, "-m", "destatic", *worker_command[2:]], env=worker_env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            pools = _wait_for_worker(env, tmp_path, "made-here")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        assert pools, "the worker started by the printed command never polled its pool"
        assert list((tmp_path / "home").iterdir()) == [], "a command wrote under the home folder"
    finally:
        _destatic(["destatic", "server", "stop"], env, tmp_path)
        shutil.rmtree(tmp_path / "state", ignore_errors=True)


def _wait_for_worker(env: dict[str, str], cwd: Path, pool: str, timeout: float = 90.0) -> bool:
    """Whether a worker of `pool` shows on the server within `timeout` s (asked through ``destatic prefect``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = _destatic(["destatic", "prefect", "work-pool", "inspect", pool], env, cwd)
        if listed.returncode == 0 and "status=WorkPoolStatus.READY" in listed.stdout:
            return True
        time.sleep(2)
    return False


@pytest.mark.parametrize("command", [["prefect", "--help"], ["prefect", "version"]])
def test_destatic_prefect_passes_through(command: list[str], tmp_path: Path) -> None:
    env = {**_environment(tmp_path), "DESTATIC_RUNTIME__SERVER": "embedded"}
    done = _destatic(["destatic", *command], env, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("Usage: prefect" in done.stdout) if "--help" in command else ("Version:" in done.stdout)
    assert list((tmp_path / "home").iterdir()) == []


@pytest.mark.parametrize("command", [["prefect", "--help"], ["prefect", "artifact", "inspect", "--help"], ["prefect"]])
def test_prefect_help_starts_no_server(command: list[str], tmp_path: Path) -> None:
    env = _environment(tmp_path)  # the background server, which a prefect command that reaches the API would start
    done = _destatic(["destatic", *command], env, tmp_path, timeout=120)
    assert "Usage: prefect" in done.stdout, done.stderr
    status = _destatic(["destatic", "server", "status"], env, tmp_path, timeout=60)
    assert status.returncode == 1 and "is not running" in status.stdout, status.stdout


def test_a_bad_option_value_is_one_error_line_without_pydantic_preamble(tmp_path: Path, speech_wav: Path) -> None:
    done = _destatic(["destatic", "run", str(speech_wav), "--method", "magic"], _environment(tmp_path), tmp_path, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert re.fullmatch(r"error: Invalid value for '--method': 'magic' is not one of 'seed', .*\(see destatic run --help\)\n", done.stderr), done.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_watch_once_waits_for_files_just_dropped_and_says_what_it_does(tmp_path: Path, speech_wav: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from destatic.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESTATIC_PATHS__WORK", str(tmp_path / "work"))
    inbox = tmp_path / "drop" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "fresh.wav").write_bytes(speech_wav.read_bytes())
    (inbox / "broken.mp4").write_bytes(b"\0" * 4096)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["watch", str(inbox), "--once", "--stable", "2"])
    assert result.exit_code == 1, result.output  # the broken file failed
    assert time.monotonic() - started >= 2.0
    assert "waiting for 2 file(s) still being written or settling" in result.stderr
    assert (tmp_path / "drop" / "outbox" / "fresh.wav").is_file() and (tmp_path / "drop" / "quarantine" / "broken.mp4").is_file()
    lines = result.stdout.splitlines()
    assert "taken: fresh.wav" in lines and "taken: broken.mp4" in lines, result.stdout
    assert any(re.fullmatch(r"done: fresh\.wav -> .*/drop/outbox/fresh\.wav \(\d+\.\d s, speech quality \d\.\d\d( needs listening)?\)", line)
               for line in lines), result.stdout
    failed = [line for line in lines if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith("failed: broken.mp4: not media, truncated or corrupt"), result.stdout


@pytest.fixture
def harness_environment(prefect_harness: None, tmp_path: Path) -> dict[str, str]:
    """The environment of a command that talks to the test session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "80", "DESTATIC_PATHS__WORK": str(tmp_path / "work")}


def _unwanted_lines(stderr: str) -> list[str]:
    """Prefect's log lines, and anything naming an internal claim folder."""
    return [line for line in stderr.splitlines() if re.search(r"\| (INFO|WARNING|ERROR) +\||\.processing|Traceback", line)]


def test_one_line_per_bad_file_under_run_and_watch(harness_environment: dict[str, str], tmp_path: Path, speech_wav: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 4096)
    ran = _destatic(["destatic", "run", str(bad), str(speech_wav), "-o", str(tmp_path / "cleaned")], harness_environment, tmp_path)
    assert ran.returncode == 1, ran.stderr
    assert _unwanted_lines(ran.stderr) == [], ran.stderr
    named = [line for line in ran.stderr.splitlines() if "bad.mp4" in line]
    assert len(named) == 1 and re.fullmatch(r"failed: .*/bad\.mp4: not media, truncated or corrupt \(no moov atom\) \(step extract\)", named[0]), ran.stderr

    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    shutil.copyfile(bad, inbox / "sub" / "bad.mp4")
    watched = _destatic(["destatic", "watch", str(inbox), "--once", "--stable", "0"], harness_environment, tmp_path)
    assert watched.returncode == 1, watched.stderr
    assert _unwanted_lines(watched.stderr) == [], watched.stderr
    assert watched.stdout.splitlines() == ["taken: sub/bad.mp4", "failed: sub/bad.mp4: not media, truncated or corrupt (no moov atom)"]

    verbose = _destatic(["destatic", "run", str(bad), "--verbose"], harness_environment, tmp_path)
    assert verbose.returncode == 1 and re.search(r"\| ERROR +\| Flow run", verbose.stderr), verbose.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "missing.wav"], "error: Invalid value for 'FILE': file 'missing.wav' does not exist. (see destatic run --help)"),
        (["run", "{speech}", "--reduction-db", "-3"], "error: bad setting: suppression.reduction_db=-3.0: Input should be greater than 0"),
        (["run", "{speech}", "-o", "x.mkv"], "error: output 'x.mkv': 'speech.wav' is audio, so is what comes out; use an audio extension"),
        (["run", "{speech}", "--bogus"], "error: No such option: --bogus"),
        (["bogus"], "error: No such command 'bogus'. (see destatic --help)"),
    ],
)
def test_usage_errors_read_alike(arguments: list[str], message: str, tmp_path: Path, speech_wav: Path) -> None:
    env = {**os.environ, "COLUMNS": "60"}
    done = _destatic(["destatic", *(word.format(speech=speech_wav) for word in arguments)], env, tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_a_low_speech_quality_is_flagged_and_a_file_without_voice_gets_no_score(tmp_path: Path, speech_wav: Path, make_settings) -> None:
    import numpy as np
    import soundfile as sf
    from prefect import get_client

    from destatic.flows import denoise_file
    from destatic.flows.graph import NEEDS_LISTENING
    from destatic.steps.quality import NEEDS_LISTENING_BELOW

    barely = make_settings(suppression={"reduction_db": 1.0})  # the car noise stays: a poor output
    state = denoise_file(speech_wav, barely, output=tmp_path / "barely.wav", return_state=True)
    record = json.loads(next((tmp_path / "work").glob("speech-*/last-run.json")).read_text())
    assert record["speech_quality"]["output"]["ovrl"] < NEEDS_LISTENING_BELOW, record["speech_quality"]
    with get_client(sync_client=True) as client:
        assert NEEDS_LISTENING in client.read_flow_run(state.state_details.flow_run_id).tags
    report = next((tmp_path / "work").glob("speech-*/report.md")).read_text()
    assert "speech quality (DNSMOS P.835" in report and "listen to this one" in report

    hiss = tmp_path / "hiss.wav"
    sf.write(hiss, np.random.default_rng(5).normal(0, 0.05, 3 * 16000).astype(np.float32), 16000)
    state = denoise_file(hiss, make_settings(), output=tmp_path / "hiss-clean.wav", return_state=True)
    report = next((tmp_path / "work").glob("hiss-*/report.md")).read_text()
    assert "speech quality: not scored: no voice found" in report
    with get_client(sync_client=True) as client:
        assert NEEDS_LISTENING not in client.read_flow_run(state.state_details.flow_run_id).tags
