"""Figures for running unattended: peak memory, long videos against afftdn, cached re-runs, the work folder's budget.

Starts its own ``prefect server start`` (a private PREFECT_HOME under
benchmarks/out/unattended) with ``PREFECT_API_URL`` set, and times whole
``destatic run`` processes, each with a fresh work folder unless the figure is
about the cache:

- for each ``--minutes`` (10 and 60): a generated 640x360 h264/aac video,
  ``ffmpeg -i in.mp4 -af afftdn -c:v copy out.mp4`` and ``destatic run
  --method logmmse`` on it in turn, wall and CPU time, and the peak resident
  set size of every process of the run (sampled every 20 ms with psutil):
  the largest one is the figure, the others its breakdown (``destatic`` is
  the flow's process, ``steps-child`` and ``report-child`` the processes
  the heavy steps run in, :mod:`destatic.steps.isolated`), and the peak of
  their sum;
- the same with the default method (the learned one where it installs) for
  each ``--learned-minutes``;
- a cached re-run of the 10-minute video, the output deleted in between,
  median of ``--repeat`` (5);
- ``--budget-files`` (50) one-minute videos cleaned by one ``destatic run``
  with ``cache.max_gb`` at ``--budget-gb``, the work folder's size after it,
  and after ``destatic cache prune --to`` a tenth of that.

Usage: ``python benchmarks/unattended.py [--minutes 10 60] [--learned-minutes 10] [--skip-budget]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline_overhead import afftdn_command, base_env, make_long_video, start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "benchmarks" / "out" / "unattended"
SAMPLE_S = 0.02
RSS_TARGET_MB = 250.0
LEARNED_RSS_TARGET_MB = 300.0


@dataclass
class Measured:
    """One whole process tree: wall and CPU seconds, and the peak RSS (MiB) of each of its processes."""

    wall: float
    cpu: float
    peaks: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    """The peak of the sum over the processes alive at once (shared pages counted in each)."""

    @property
    def largest(self) -> tuple[str, float]:
        return max(self.peaks.items(), key=lambda item: item[1]) if self.peaks else ("-", 0.0)


def _label(process: psutil.Process) -> str:
    try:
        command = process.cmdline()
        name = Path(command[0]).name if command else process.name()
    except psutil.Error:  # gone between the listing and the look
        return f"pid {process.pid}"
    if "destatic" in " ".join(command[:2]):
        name = "destatic"
    elif "destatic.steps.isolated" in " ".join(command):
        name = f"{command[-1]}-child"  # a step child of the given kind (destatic.steps.isolated)
    return f"{name} {process.pid}"


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run `command` to its end, sampling the RSS of it and every descendant; fail loudly if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[str, float] = {}
    total = [0.0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            now = 0.0
            for process in tree:
                try:
                    rss = process.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                label = _label(process)  # afresh: a child is its parent's copy until it execs
                peaks[label] = max(peaks.get(label, 0.0), rss)
                now += rss
            total[0] = max(total[0], now)
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({child.returncode}): {err[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(wall, cpu, peaks, total[0])


def folder_mb(folder: Path) -> tuple[float, float]:
    """The files under `folder`: their sizes (what the budget counts) and the space they take on disk, in MiB."""
    stats = [path.stat() for path in folder.rglob("*") if path.is_file()]
    return sum(stat.st_size for stat in stats) / 2**20, sum(stat.st_blocks * 512 for stat in stats) / 2**20


def breakdown(measured: Measured) -> str:
    """The processes above 20 MiB, largest first."""
    big = sorted(((mb, name) for name, mb in measured.peaks.items() if mb >= 20), reverse=True)
    return ", ".join(f"{name.split()[0]} {mb:.0f}" for mb, name in big[:6])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[10.0, 60.0], help="video lengths, classic method")
    parser.add_argument("--learned-minutes", type=float, nargs="*", default=[10.0], help="video lengths, default method")
    parser.add_argument("--repeat", type=int, default=5, help="cached re-runs (the median is shown)")
    parser.add_argument("--budget-files", type=int, default=50)
    parser.add_argument("--budget-gb", type=float, default=0.5, help="cache.max_gb for the budget run")
    parser.add_argument("--skip-budget", action="store_true")
    args = parser.parse_args()

    import imageio_ffmpeg

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    prefect_home = OUT / "prefect-home"
    server, api_url = start_server(prefect_home, OUT / "server.log")
    env = {**base_env(prefect_home), "PREFECT_API_URL": api_url}
    cli = [str(Path(sys.executable).parent / "destatic")]
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    rows: list[tuple[str, str, str]] = []
    videos: dict[float, Path] = {}
    try:
        for minutes in sorted(set(args.minutes) | set(args.learned_minutes)):
            videos[minutes] = OUT / f"long-{minutes:g}min.mp4"
            make_long_video(videos[minutes], minutes)
        for minutes, method in [(m, "logmmse") for m in args.minutes] + [(m, None) for m in args.learned_minutes]:
            video = videos[minutes]
            peer = measure(afftdn_command(video, OUT / "afftdn.mp4"), env)
            work = OUT / f"work-{minutes:g}-{method or 'default'}"
            chosen = ["--method", method] if method else []
            ours = measure([*cli, "run", str(video), "-o", str(OUT / f"clean-{minutes:g}-{method or 'default'}.mp4"),
                            "--work", str(work), *chosen], env)
            what = f"{minutes:g} min, {method or 'default method'}"
            target = RSS_TARGET_MB if method else LEARNED_RSS_TARGET_MB
            name, mb = ours.largest
            rows.append((f"afftdn, {minutes:g} min video", f"{peer.wall:.1f} s wall, {peer.cpu:.1f} s CPU", ""))
            rows.append((f"destatic run, {what}", f"{ours.wall:.1f} s wall = {ours.wall / peer.wall:.2f}x afftdn, "
                         f"{ours.cpu:.1f} s CPU = {ours.cpu / peer.cpu:.2f}x", ""))
            rows.append((f"  peak RSS of its largest process ({name.split()[0]})", f"{mb:.0f} MiB",
                         f"<= {target:.0f} MiB: {'ok' if mb <= target else 'MISSED'}"))
            rows.append(("  every process above 20 MiB", breakdown(ours), ""))
            rows.append(("  all its processes at once (peak of the sum)", f"{ours.total:.0f} MiB", ""))
            if minutes != min(videos) or method is None:
                shutil.rmtree(work)

        shortest = min(args.minutes)
        cached_work = OUT / f"work-{shortest:g}-logmmse"
        output = OUT / "cached.mp4"
        walls = []
        for _ in range(args.repeat):
            output.unlink(missing_ok=True)
            walls.append(measure([*cli, "run", str(videos[shortest]), "-o", str(output), "--work", str(cached_work),
                                  "--method", "logmmse"], env).wall)
        rows.append((f"cached re-run, {shortest:g} min video, output deleted, median of {args.repeat}",
                     f"{statistics.median(walls):.2f} s (all: {' '.join(f'{w:.2f}' for w in walls)})",
                     f"<= 1 s: {'ok' if statistics.median(walls) <= 1.0 else 'MISSED'}"))

        if not args.skip_budget:
            rows += budget_rows(cli, env, ffmpeg, args.budget_files, args.budget_gb)
    finally:
        stop_server(server)

    print(f"load average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    width = max(len(row[0]) for row in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value}  {target}")
    return 0


def budget_rows(cli: list[str], env: dict[str, str], ffmpeg: str, files: int, budget_gb: float) -> list[tuple[str, str, str]]:
    """Clean `files` one-minute videos with the work folder capped at `budget_gb`; its size after, and after a prune."""
    inputs, outputs, work = OUT / "budget-in", OUT / "budget-out", OUT / "budget-work"
    inputs.mkdir()
    make_long_video(inputs / "v00.mp4", 1.0)
    for index in range(1, files):  # different audio, so that every file has its own cache entries
        subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(inputs / "v00.mp4"), "-c:v", "copy",
                        "-af", f"volume={1 - index / (2 * files):.4f}", "-c:a", "aac", "-b:a", "160k",
                        str(inputs / f"v{index:02d}.mp4")], check=True)
    budget_env = {**env, "DESTATIC_CACHE__MAX_GB": str(budget_gb)}
    run = measure([*cli, "run", *map(str, sorted(inputs.iterdir())), "-o", str(outputs), "--work", str(work),
                   "--method", "logmmse"], budget_env)
    after_run = folder_mb(work)
    prune_to = budget_gb / 10
    measure([*cli, "cache", "prune", "--to", str(prune_to), "--work", str(work)], budget_env)
    after_prune = folder_mb(work)
    return [
        (f"{files} one-minute videos, cache.max_gb {budget_gb:g}", f"{run.wall:.0f} s wall", ""),
        ("  work folder after the run: sizes (on disk)", f"{after_run[0]:.1f} MiB ({after_run[1]:.1f})",
         f"<= {budget_gb * 1024:.1f} MiB: {'ok' if after_run[0] <= budget_gb * 1024 else 'MISSED'}"),
        (f"  after destatic cache prune --to {prune_to:g}: sizes (on disk)", f"{after_prune[0]:.1f} MiB ({after_prune[1]:.1f})",
         f"<= {prune_to * 1024:.1f} MiB: {'ok' if after_prune[0] <= prune_to * 1024 else 'MISSED'}"),
    ]


if __name__ == "__main__":
    sys.exit(main())
