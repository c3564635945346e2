"""kill -9 the watcher's own Prefect server at seeded random moments, 3 times over a batch: nothing lost, nothing twice, nothing counted against a file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import drills

pytestmark = pytest.mark.slow  # about 2.5 min; .ci/run runs it with the cluster test


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> drills.ServerKillFigures:
    """One drill for the module: a served watcher on its background server, 12 WAVs and a bad file, 3 kills of the server."""
    return drills.server_kill_drill(tmp_path_factory.mktemp("server-kills"), files=12, bad=1, kills=3)


def test_every_file_exactly_once_through_three_server_kills(drill: drills.ServerKillFigures) -> None:
    verdict = drill.verdict
    assert drill.kills == 3, drill
    assert verdict.exactly_once, verdict  # 0 lost, 0 done twice, only the bad file quarantined, every good input in done/
    assert verdict.changed == [] and verdict.bad_outputs == {}, "an input changed or an output is partial"
    assert verdict.leftovers == [], "temporary or claimed files left behind"


def test_the_outage_counts_against_no_file(drill: drills.ServerKillFigures) -> None:
    assert drill.failure_records == 0, "a file was counted as failed for the server's death"
    assert set(drill.runs_per_file.values()) == {1}, drill.runs_per_file


def test_the_console_says_each_outage_in_two_lines_without_tracebacks(drill: drills.ServerKillFigures) -> None:
    assert drill.tracebacks == 0
    gone = [line for line in drill.outage_lines if "does not answer: starting destatic's server again" in line]
    back = [line for line in drill.outage_lines if "answers again after" in line]
    assert len(gone) == len(back) == drill.kills and len(drill.outage_lines) == 2 * drill.kills, drill.outage_lines
    assert all("file(s) waiting" in line for line in drill.outage_lines)


def test_the_server_came_back_each_time(drill: drills.ServerKillFigures) -> None:
    assert len(drill.back_after_s) == drill.kills and max(drill.back_after_s) < 120, drill.back_after_s


def test_watch_once_rides_out_a_server_kill_and_says_so(tmp_path: Path) -> None:
    """``destatic watch --once``: the same outcome and the same two console lines as the served watcher."""
    drill = drills.server_kill_drill(tmp_path, files=8, bad=0, kills=1, once=True)
    assert drill.kills == 1 and drill.verdict.exactly_once, drill.verdict
    assert drill.failure_records == 0 and drill.tracebacks == 0
    assert len(drill.outage_lines) == 2 and all("file(s) waiting" in line for line in drill.outage_lines), drill.outage_lines


@pytest.mark.parametrize("command, moment", [
    ("watch", "at once after 'watching', both cores busy"),
    ("watch", "while the temporary server starts"),
    ("run", "while the temporary server starts"),
])
def test_sigterm_stops_the_command_and_the_server_it_started(tmp_path: Path, command: str, moment: str) -> None:
    """SIGTERM to ``destatic watch`` or ``run`` on Prefect's temporary server: status 143 within seconds, and no server left running without its parent.

    'watching' is said once that server answers: before, a SIGTERM after the
    line met a process still starting it.
    """
    import os
    import signal
    import sys
    import time

    (tmp_path / "inbox").mkdir()
    arguments = ["watch", "inbox"]
    if command == "run":
        import numpy as np
        import soundfile

        soundfile.write(tmp_path / "inbox" / "hiss.wav", 0.01 * np.random.default_rng(0).standard_normal(48_000), 16_000)
        arguments = ["run", "inbox/hiss.wav"]
    env = {**os.environ, "DESTATIC_RUNTIME__SERVER": "embedded", "DESTATIC_PATHS__WORK": str(tmp_path / "work"),
           "PREFECT_HOME": str(tmp_path / "prefect"), "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "command.log"
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 if "busy" in moment else 0)]
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "destatic", *arguments], cwd=tmp_path, env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ("watching" in log.read_text() if "busy" in moment else _starts_its_server(process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert "watching" not in log.read_text() or "busy" in moment, "said 'watching' before its server started"
        os.kill(process.pid, signal.SIGTERM)
        sent = time.monotonic()
        try:
            status = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 15 s after SIGTERM; its processes and their threads:\n{drills.group_stacks(process.pid)}\n"
                        f"{command}'s output:\n{log.read_text()}")
        assert status == 128 + signal.SIGTERM, log.read_text()
        deadline = time.monotonic() + 30
        while drills.group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not drills.group_alive(process.pid), "a process of the command's session (its server) outlived it"
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        for spinner in busy:
            spinner.kill()
            spinner.wait()
        if drills.group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)


def _starts_its_server(pid: int) -> bool:
    """Whether process `pid` has started Prefect's temporary server (uvicorn, a child of its own)."""
    listing = subprocess.run(["ps", "-o", "ppid=,args=", "-A"], capture_output=True, text=True).stdout
    return any(line.split(None, 1)[0] == str(pid) and "uvicorn" in line for line in listing.splitlines() if line.strip())
