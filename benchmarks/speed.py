"""Speed benchmark: destatic against ffmpeg ``afftdn`` on the same file in the same run.

Generates minutes of 48 kHz stereo speech over real noise into a temporary
16-bit WAV, then times, file to file: ``ffmpeg -af afftdn=nr=24:nf=-30``,
``destatic.denoise`` in memory (read, denoise, write; the denoise step alone
is shown too; by default it filters each channel in its own process) and the
streaming path (``soundfile.blocks`` through ``destatic.dsp.denoise_stream``)
in one process and with a process per channel. Target: destatic at least 2x
faster than afftdn.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common

TARGET_RATIO = 2.0


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds (this process and its children: ffmpeg, channel processes) and the result."""

    def cpu() -> float:
        return time.process_time() + child_cpu_seconds()

    wall0, cpu0 = time.perf_counter(), cpu()
    result = run()
    return time.perf_counter() - wall0, cpu() - cpu0, result


def afftdn_file(source: Path, target: Path, options: str) -> None:
    subprocess.run(
        [common.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source), "-af", f"afftdn={options}", str(target)],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the test file (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool; the fastest counts (default 1)")
    parser.add_argument("--method", default=None, help="destatic method (default: destatic's default)")
    parser.add_argument("--afftdn", default="nr=24:nf=-30", help="afftdn options (default nr=24:nf=-30)")
    args = parser.parse_args(argv)
    common.require_media()
    import destatic.dsp  # noqa: F401  (import time is not denoising time)

    audio_seconds = args.minutes * 60

    with tempfile.TemporaryDirectory(prefix="destatic-speed-") as tmp:
        source = Path(tmp) / "speech_noise.wav"
        print(f"writing {args.minutes:g} min of 48 kHz stereo speech+noise to {source} ...", file=sys.stderr)
        common.write_speech_noise_wav(source, args.minutes)
        cases: dict[str, Callable[[], object]] = {
            "ffmpeg afftdn": lambda: afftdn_file(source, Path(tmp) / "afftdn.wav", args.afftdn),
            "destatic.denoise (in memory)": lambda: common.denoise_file_in_memory(
                source, Path(tmp) / "memory.wav", method=args.method
            ),
            "destatic streaming, 1 process": lambda: common.denoise_file_streaming(
                source, Path(tmp) / "stream.wav", method=args.method, n_jobs=1
            ),
            "destatic streaming, a process per channel": lambda: common.denoise_file_streaming(
                source, Path(tmp) / "stream-jobs.wav", method=args.method, n_jobs=None
            ),
        }
        best: dict[str, tuple[float, float]] = {}
        steps: dict[str, float] = {}
        for attempt in range(args.repeat):
            for label, run in cases.items():
                print(f"run {attempt + 1}: {label} ...", file=sys.stderr)
                wall, cpu, result = timed(run)
                if label not in best or wall < best[label][0]:
                    best[label] = (wall, cpu)
                    if isinstance(result, dict):
                        steps = result

    reference, reference_cpu = best["ffmpeg afftdn"]
    rows: list[tuple[str, float, float | None]] = [(label, wall, cpu) for label, (wall, cpu) in best.items()]
    rows.append(("  of which denoise() alone", steps["denoise"], None))
    print(f"\n{args.minutes:g} min of 48 kHz stereo, file to file (16-bit WAV), best of {args.repeat}\n")
    print("| tool | wall s | CPU s | realtime factor | afftdn wall / this | afftdn CPU / this |")
    print("|---|---|---|---|---|---|")
    for label, wall, cpu in rows:
        cpu_cells = "-" if cpu is None else f"{cpu:.1f}"
        cpu_ratio = "-" if cpu is None else f"{reference_cpu / cpu:.2f}"
        print(f"| {label} | {wall:.1f} | {cpu_cells} | {audio_seconds / wall:.0f}x | {reference / wall:.2f} | {cpu_ratio} |")
    walls = {label: wall for label, (wall, _) in best.items()}
    walls["destatic.denoise() call alone (the issue's figure)"] = steps["denoise"]
    for label, wall in walls.items():
        if label.startswith("destatic"):
            ratio = reference / wall
            verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
            print(f"{label}: {ratio:.2f}x afftdn's speed (wall), {verdict} the target >= {TARGET_RATIO:g}x")
    print(
        "CPU s counts this process and its children (ffmpeg; destatic's channel processes). "
        "destatic.denoise uses a process per channel by default on audio of 30 s or more; "
        "afftdn also runs channels in parallel threads."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
