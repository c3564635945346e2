"""Which Prefect server a command uses: destatic's background one, found and reused; Prefect's temporary one, left tidy."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path



def _destatic(*arguments: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "destatic", *arguments], env=env, capture_output=True, text=True, timeout=timeout)


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _post(url: str, body: dict) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_the_background_server_is_started_once_found_by_later_commands_and_stopped(tmp_path: Path, speech_wav: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "DESTATIC_RUNTIME__SERVER": "background"}
    env.pop("PREFECT_API_URL", None)
    with socket.socket() as busy:  # another program holds Prefect's usual port
        if _free(4200):
            busy.bind(("127.0.0.1", 4200))
        try:
            assert _destatic("server", "status", env=env).returncode == 1
            first = _destatic("run", str(speech_wav), "-o", str(tmp_path / "a.flac"), "--work", str(tmp_path / "work"), env=env)
            assert first.returncode == 0, first.stderr
            assert "destatic's Prefect server (started), UI http://127.0.0.1:" in first.stderr
            status = _destatic("server", "status", env=env)
            assert status.returncode == 0 and "running: API http://127.0.0.1:" in status.stdout
            record = json.loads((tmp_path / "state" / "destatic" / "server" / "server.json").read_text())
            assert record["port"] != 4200
            assert _get(f"{record['ui_url']}/ui-settings")["api_url"] == record["api_url"], "the UI talks to this server's API"

            second = _destatic("run", str(speech_wav), "-o", str(tmp_path / "b.wav"), "--work", str(tmp_path / "work"), env=env)
            assert second.returncode == 0, second.stderr
            assert "destatic's Prefect server, UI" in second.stderr and "(started)" not in second.stderr
            runs = _post(f"{record['api_url']}/flow_runs/filter", {"limit": 10})
            assert len(runs) == 2 and {run["state_type"] for run in runs} == {"COMPLETED"}
        finally:
            stopped = _destatic("server", "stop", env=env)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert _destatic("server", "status", env=env).returncode == 1


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_prefect_temporary_server_records_every_task_run_before_it_stops(tmp_path: Path, speech_wav: Path) -> None:
    """Its recorder used to be cancelled at exit while it wrote the last states: a traceback, and task runs left unfinished.

    That race was seen in 2 of 10 runs under load; this checks the outcome of one run.
    """
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "DESTATIC_RUNTIME__SERVER": "embedded"}
    env.pop("PREFECT_API_URL", None)
    done = _destatic("run", str(speech_wav), "--audio-only", "--format", "flac", "-o", str(tmp_path / "out.flac"), "--work", str(tmp_path / "w"), env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error flushing" not in done.stderr, done.stderr
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as database:
        states = [state for (state,) in database.execute("SELECT state_type FROM task_run")]
    assert len(states) == 7 and set(states) == {"COMPLETED"}, states
