"""Watcher latency: from a file settling in a local inbox to its run taking it, with notifications and with scans only.

Runs ``destatic watch INBOX`` (``--server embedded``: Prefect's temporary
server, scans in a plain loop; ``background``: destatic's own server, the
watcher served as a deployment) twice in the same run, ``--events on`` and ``--events off``, with the same
``--interval`` and ``--stable``. Each file (a real 2.5 s NOIZEUS sentence) is
written, its mtime set to the moment it was written, and is settled
``stable`` seconds later; its latency is the time from then to the
watcher's ``taken:`` line (printed by the scan's flow run once it has
claimed the file, so the run has started). The next file is dropped once
the previous one is done. Target: <= 1 s with events (issue 33), against up
to ``interval + stable`` with scans alone.

Usage: ``python benchmarks/event_latency.py [--files 5] [--interval 10] [--stable 2] [--server embedded|background]``.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEECH = REPO_ROOT.parent / "shared" / "media" / "pairs" / "noizeus" / "sp01_car_sn5.wav"


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((time.time(), line.rstrip("\n")))


def _wait_for(lines: queue.Queue, prefix: str, timeout: float, log: list[str]) -> float:
    deadline = time.monotonic() + timeout
    while True:
        try:
            when, line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise SystemExit(f"no line starting {prefix!r} within {timeout:g} s; the watcher said:\n" + "\n".join(log[-30:])) from None
        log.append(line)
        if line.startswith(prefix):
            return when


def measure(events: str, *, files: int, interval: float, stable: float, root: Path, server: str) -> list[float]:
    """Latencies (s) of `files` files through one ``destatic watch`` with ``--events`` `events`."""
    inbox = root / f"inbox-{events}"
    inbox.mkdir(parents=True)
    env = {**os.environ, "DESTATIC_RUNTIME__SERVER": server, "DESTATIC_SUPPRESSION__METHOD": "wiener", "XDG_STATE_HOME": str(root / "state"),
           "DESTATIC_PATHS__WORK": str(root / f"work-{events}"), "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "destatic", "watch", str(inbox), "--interval", f"{interval:g}", "--stable", f"{stable:g}", "--events", events]
    # A session of its own, so that stopping it stops the Prefect server process it may have started too.
    watcher = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(watcher.stdout, lines), daemon=True).start()
    log: list[str] = []
    latencies = []
    try:
        _wait_for(lines, "watching ", 300, log)
        for index in range(files + 1):  # the first one warms the watcher up (imports, first flow run)
            name = f"f{index:02d}.wav"
            staging = root / f".{name}"
            shutil.copyfile(SPEECH, staging)
            written = time.time()
            os.utime(staging, (written, written))
            os.rename(staging, inbox / name)
            taken = _wait_for(lines, f"taken: {name}", interval + stable + 120, log)
            _wait_for(lines, f"done: {name}", 300, log)
            if index:
                latencies.append(taken - (written + stable))
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(watcher.pid, signal.SIGKILL)
        if server == "background":
            subprocess.run([sys.executable, "-m", "destatic", "server", "stop"], env=env, cwd=root, capture_output=True, timeout=120)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--stable", type=float, default=2.0)
    parser.add_argument("--server", choices=("embedded", "background"), default="embedded",
                        help="embedded: Prefect's temporary server, scans in a plain loop; background: destatic's own server, "
                        "the watcher served as a deployment (its event scans run in the watcher's process)")
    args = parser.parse_args()
    if not SPEECH.is_file():
        raise SystemExit(f"shared media absent: {SPEECH}")
    with tempfile.TemporaryDirectory(prefix="destatic-latency-") as folder:
        results = {mode: measure(mode, files=args.files, interval=args.interval, stable=args.stable, root=Path(folder), server=args.server)
                   for mode in ("on", "off")}
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"settle-to-taken latency, {args.files} files, --interval {args.interval:g} --stable {args.stable:g}, {args.server} server; "
          f"load average {' '.join(load)}")
    print(f"{'watch.events':<14}{'median s':>10}{'max s':>10}  each")
    for mode, values in results.items():
        print(f"{mode:<14}{statistics.median(values):>10.2f}{max(values):>10.2f}  {' '.join(f'{value:.2f}' for value in values)}")
    ratio = statistics.median(results["off"]) / max(statistics.median(results["on"]), 1e-3)
    verdict = "meets" if max(results["on"]) <= 1.0 else "misses"
    print(f"events {verdict} the 1 s target (max {max(results['on']):.2f} s); scans alone take {ratio:.1f}x as long (median)")


if __name__ == "__main__":
    main()
