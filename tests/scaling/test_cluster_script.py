"""scripts/cluster/cluster.sh without starting anything: its arguments, status and down on nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster" / "cluster.sh"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers '0' must be a positive integer"),
        (["--workers", "two"], "--workers 'two' must be a positive integer"),
        (["--pool", "a b"], "--pool 'a b' may hold only letters, digits"),
        (["--limit", "-1"], "--limit '-1' must be a positive integer"),
        (["--speed", "9"], "unknown option '--speed'"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    done = _run("up", str(tmp_path / "state"), *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "state" / "postgres").exists()


def test_heartbeat_must_be_shorter_than_the_crash_window(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DESTATIC_ZOMBIE_AFTER_SECONDS": "30", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    done = _run("status", str(tmp_path), env=env)
    assert done.returncode == 1
    assert "must be >= 30 s and below DESTATIC_ZOMBIE_AFTER_SECONDS (30)" in done.stderr


def test_usage_without_a_state_folder() -> None:
    done = _run("up")
    assert done.returncode == 2
    assert "cluster.sh up STATE_DIR" in done.stderr


def test_status_and_down_on_a_fresh_folder_start_nothing(tmp_path: Path) -> None:
    status = _run("status", str(tmp_path))
    assert status.returncode == 0
    assert status.stdout.split() == ["postgres", "stopped", "server", "stopped"]
    down = _run("down", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "postgres").exists()
