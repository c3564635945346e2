"""Whole ``destatic run`` processes of two or more source trees, alternated, each round beside afftdn.

For a change whose gain is smaller than the run-to-run spread: every round
times ``ffmpeg -af afftdn -c:v copy`` on the 10-minute video of
``pipeline_overhead.py``, then one ``destatic run`` of it per source tree
(this venv's Python with the tree's ``src`` first on ``PYTHONPATH``, so the
steps' children run the same code), each with a fresh work folder, on one
Prefect server started here. Prints each run's ratio and steps, then each
tree's median. A tree's first run after its folder is new compiles the numba
kernels (their cache is keyed by path): run a round to warm it first.

Usage: ``python benchmarks/source_ab.py [--rounds 3] [--method hybrid] TREE [TREE ...]``
(e.g. ``/work/main /work/wt-28``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from pipeline_overhead import OUT, afftdn_command, base_env, make_long_video, start_server, step_seconds, stop_server, timed

AB = OUT.parent / "source_ab"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="source trees (folders holding src/destatic)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of afftdn then one run per tree (default 3)")
    parser.add_argument("--method", default="hybrid", help="destatic method (default hybrid, passed explicitly)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated video (default 10)")
    args = parser.parse_args(argv)
    trees = [tree.absolute() for tree in args.trees]
    missing = [str(tree) for tree in trees if not (tree / "src" / "destatic").is_dir()]
    if missing:
        parser.error(f"not a destatic source tree (no src/destatic): {', '.join(missing)}")
    AB.mkdir(parents=True, exist_ok=True)
    video = AB / "long.mp4"
    if not video.is_file():
        make_long_video(video, args.minutes)
    prefect_home = AB / "prefect"
    server, api_url = start_server(prefect_home, AB / "server.log")
    ratios: dict[Path, list[float]] = {tree: [] for tree in trees}
    try:
        for round_ in range(args.rounds):
            peer = timed(afftdn_command(video, AB / "afftdn.mp4"), base_env(prefect_home))
            for tree in trees:
                env = {**base_env(prefect_home), "PREFECT_API_URL": api_url, "PYTHONPATH": str(tree / "src")}
                work = AB / "work"
                shutil.rmtree(work, ignore_errors=True)
                load = os.getloadavg()[0]
                ours = timed([sys.executable, "-m", "destatic", "run", str(video), "--method", args.method,
                              "-o", str(AB / "clean.mp4"), "--work", str(work)], env)
                ratios[tree].append(ours.wall / peer.wall)
                steps = " ".join(f"{name} {seconds:.1f}" for name, seconds in step_seconds(work).items() if seconds >= 0.05)
                print(f"round {round_ + 1} {tree}: {ours.wall:.1f} s, afftdn {peer.wall:.1f} s = {ours.wall / peer.wall:.2f}x, "
                      f"CPU {ours.cpu:.1f} s, load {load:.2f}; steps {steps}", flush=True)
    finally:
        stop_server(server)
    for tree, values in ratios.items():
        print(f"{tree}: median {statistics.median(values):.2f}x afftdn (runs {' '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
