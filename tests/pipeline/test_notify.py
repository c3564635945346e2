"""Notifications of a local inbox (destatic.notify): a settled file wakes the watcher at once; network mounts fall back to scans."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from destatic.notify import SettleWatch, events_work, file_system_type

pytest.importorskip("watchfiles")


def test_a_settled_file_wakes_the_watch_within_its_check_interval(tmp_path: Path, speech_wav: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    woken: list[tuple[float, list[Path]]] = []
    seen = threading.Event()

    def settled(paths: list[Path]) -> None:
        woken.append((time.time(), paths))
        seen.set()

    stable_s = 0.5
    with SettleWatch(inbox, stable_s, settled):
        (inbox / ".hidden.wav").write_bytes(b"x")
        (inbox / "notes.txt").write_text("not media")
        shutil.copyfile(speech_wav, inbox / "sub" / "a.wav")
        written = (inbox / "sub" / "a.wav").stat().st_mtime
        assert seen.wait(10), "no wake-up"
    when, paths = woken[0]
    assert paths == [inbox / "sub" / "a.wav"]
    assert stable_s <= when - written <= stable_s + 0.5, when - written
    assert [path for _, batch in woken for path in batch] == [inbox / "sub" / "a.wav"]


def test_a_file_still_being_written_is_not_settled(tmp_path: Path) -> None:
    woken: list[list[Path]] = []
    with SettleWatch(tmp_path, 0.6, woken.append):
        with (tmp_path / "growing.wav").open("wb") as growing:
            for _ in range(8):
                growing.write(b"\0" * 1024)
                growing.flush()
                os.fsync(growing.fileno())
                time.sleep(0.2)
                assert woken == []
        deadline = time.monotonic() + 5
        while not woken and time.monotonic() < deadline:
            time.sleep(0.05)
    assert woken == [[tmp_path / "growing.wav"]]


def test_network_mounts_fall_back_to_scans(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        f"server:/export {tmp_path}/shared\\040media nfs4 rw 0 0\n"
        f"//nas/share {tmp_path}/smb cifs rw 0 0\n"
    )
    assert file_system_type(tmp_path / "shared media" / "inbox", mounts) == "nfs4"
    assert file_system_type(tmp_path / "smb", mounts) == "cifs"
    assert file_system_type(tmp_path / "local", mounts) == "ext4"
    assert file_system_type(tmp_path, tmp_path / "absent") is None
    assert events_work(tmp_path, "off") is False
    assert events_work(tmp_path, "on") is True
    assert events_work(tmp_path, "auto") is (file_system_type(tmp_path) not in {"nfs", "nfs4", "cifs"})


@pytest.mark.usefixtures("prefect_harness")
def test_the_served_watcher_takes_a_settled_file_at_once_not_at_its_interval(tmp_path: Path, speech_wav: Path) -> None:
    """`destatic watch --events on` on a Prefect server, scans every 600 s: a file dropped after its first scan is taken and done within seconds."""
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DESTATIC_PATHS__WORK": str(tmp_path / "work"),
           "DESTATIC_SUPPRESSION__METHOD": "wiener", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "destatic", "watch", str(inbox), "--interval", "600", "--stable", "0.5", "--events", "on"]
    log = tmp_path / "watch.log"
    with log.open("w") as output:
        watcher = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "being served" not in log.read_text() and "watching" not in log.read_text():
            assert watcher.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(5)  # past the first scheduled scan
        shutil.copyfile(speech_wav, tmp_path / ".a.wav")
        os.rename(tmp_path / ".a.wav", inbox / "a.wav")
        dropped = time.monotonic()
        while "done: a.wav" not in log.read_text():
            assert watcher.poll() is None, log.read_text()
            assert time.monotonic() - dropped < 120, f"not done 120 s after it settled (scans every 600 s): {log.read_text()}"
            time.sleep(0.1)
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(timeout=30)
    assert (tmp_path / "outbox" / "a.wav").is_file() and (tmp_path / "done" / "a.wav").is_file()
    assert "Server process did not start" not in log.read_text()
