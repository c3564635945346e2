"""Where a whole ``destatic run`` of a long video spends its time: every process's CPU, sampled every 0.1 s.

Starts its own ``prefect server start`` (as ``pipeline_overhead.py`` does, a
private PREFECT_HOME under benchmarks/out/), makes the same generated video,
and for each of ``--repeat`` rounds times ``ffmpeg -af afftdn -c:v copy`` on it,
then a ``destatic run`` with a fresh work folder while sampling the CPU time of
the command and of every process under it (psutil). Prints the ratio, the
steps' times from the run's ``last-run.json``, each process's lifetime, CPU, peak
RSS (as sampled) and busy span, and the CPU seconds each kind of process used in
every 2 s window, with the load average before and after.

Usage: ``python benchmarks/timeline.py [--method hybrid] [--minutes 10] [--repeat 1] [--window 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline_overhead import OUT, afftdn_command, base_env, make_long_video, start_server, step_seconds, stop_server

TIMELINE = OUT.parent / "timeline"
SAMPLE_S = 0.1
WINDOW_S = 2


@dataclass
class Sampled:
    """One process of the run: what it is, when it was seen, and its CPU seconds at each sample."""

    label: str
    first: float
    last: float = 0.0
    cpu: list[tuple[float, float]] = field(default_factory=list)
    peak_rss: int = 0


def label_of(process: psutil.Process) -> str:
    """A short name for a process of the run: the step children by kind, ffmpeg by what it does."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return "?"
    text = " ".join(command)
    if "serve()" in text:
        return f"{command[-1]}-child"
    if "ffmpeg" in os.path.basename(command[0] if command else ""):
        if "adts" in text:
            return "ffmpeg AAC segment"
        if "setts=" in text:
            return "ffmpeg final mux"
        if "libx264" in text or ("-shortest" in text and "copy" in text):
            return "ffmpeg preview"
        return "ffmpeg other"
    return "destatic" if "run" in command else os.path.basename(command[0]) if command else "?"


def sampled_run(command: list[str], env: dict[str, str]) -> tuple[float, dict[int, Sampled]]:
    """Run `command`, sampling the CPU of it and its descendants; its wall time and the samples by PID."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(child.pid)
    seen: dict[int, Sampled] = {}
    while child.poll() is None:
        now = time.perf_counter() - started
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            processes = [root]
        for process in processes:
            try:
                times, rss = process.cpu_times(), process.memory_info().rss
            except psutil.Error:
                continue
            record = seen.setdefault(process.pid, Sampled(label_of(process), now))
            record.last = now
            record.peak_rss = max(record.peak_rss, rss)
            record.cpu.append((now, times.user + times.system))
        time.sleep(SAMPLE_S)
    error = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.wait() != 0:
        raise RuntimeError(f"destatic run failed ({child.returncode}): {error[-2000:]}")
    return time.perf_counter() - started, seen


def print_timeline(seen: dict[int, Sampled], window_s: float = WINDOW_S) -> None:
    """Each process's lifetime, CPU and busy span; then the CPU of each kind of process per window."""
    for pid, record in sorted(seen.items(), key=lambda item: item[1].first):
        total = record.cpu[-1][1]
        if total < 0.05:
            continue
        busy = [now for (now, cpu), (_, before) in zip(record.cpu[1:], record.cpu) if cpu - before > 0.3 * SAMPLE_S]
        span = f"busy {busy[0]:5.1f}-{busy[-1]:5.1f} s" if busy else ""
        print(f"  {record.label:20s} pid {pid:7d}  alive {record.first:5.1f}-{record.last:5.1f} s  CPU {total:5.1f} s  "
              f"peak RSS {record.peak_rss / 2**20:4.0f} MiB  {span}")
    windows: dict[float, dict[str, float]] = {}
    for record in seen.values():
        for (now, cpu), (_, before) in zip(record.cpu[1:], record.cpu):
            window = windows.setdefault(now // window_s * window_s, {})
            window[record.label] = window.get(record.label, 0.0) + cpu - before
    print(f"  CPU seconds per {window_s:g} s window:")
    for start in sorted(windows):
        parts = sorted(windows[start].items(), key=lambda item: -item[1])
        print(f"    {start:5.1f}-{start + window_s:5.1f} s: {sum(windows[start].values()):4.1f}  "
              + ", ".join(f"{label} {cpu:.1f}" for label, cpu in parts if cpu >= 0.1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="hybrid", help="destatic method (default hybrid, passed explicitly)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated video")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of afftdn then destatic")
    parser.add_argument("--window", type=float, default=WINDOW_S, help=f"seconds per line of the CPU timeline (default {WINDOW_S})")
    args = parser.parse_args()
    if TIMELINE.exists():
        shutil.rmtree(TIMELINE)
    TIMELINE.mkdir(parents=True)
    video = TIMELINE / "long.mp4"
    make_long_video(video, args.minutes)
    prefect_home = TIMELINE / "prefect-home"
    server, api_url = start_server(prefect_home, TIMELINE / "server.log")
    env = {**base_env(prefect_home), "PREFECT_API_URL": api_url}
    destatic = str(Path(sys.executable).parent / "destatic")
    afftdn = afftdn_command(video, TIMELINE / "afftdn.mp4")
    try:
        for attempt in range(args.repeat):
            load_before = os.getloadavg()
            started = time.perf_counter()
            subprocess.run(afftdn, check=True)
            peer = time.perf_counter() - started
            work = TIMELINE / f"work{attempt}"
            wall, seen = sampled_run([destatic, "run", str(video), "--method", args.method, "-o", str(TIMELINE / f"clean{attempt}.mp4"),
                                      "--work", str(work)], env)
            load_after = os.getloadavg()
            steps = step_seconds(work)
            print(f"round {attempt + 1}: afftdn {peer:.1f} s, destatic run {wall:.1f} s = {wall / peer:.2f}x afftdn "
                  f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} CPUs)")
            print("  steps, s: " + " ".join(f"{name} {seconds:.1f}" for name, seconds in steps.items()))
            print(f"  CPU of the whole run: {sum(record.cpu[-1][1] for record in seen.values()):.1f} s")
            print_timeline(seen, args.window)
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
