"""Long inputs: peak memory of ``destatic run`` on 15, 30, 60 and 120 minute recordings.

Each length is a generated 16 kHz mono 16-bit WAV (steady low-passed hiss, a
50 Hz hum and a one-second tone every ten seconds; 16 kHz mono keeps the
2-hour case at 230 MB of input and about 1 GB of work files). Each run is a
fresh ``python -m destatic run IN.wav --output OUT.flac`` process reporting to
a temporary Prefect server started here (so the server's memory is not
counted); psutil samples the resident set size of the run's process and of
its ffmpeg children every 0.1 s. Memory is flat in duration when the peak at
120 minutes is within a few MiB of the peak at 15.

Usage: ``python benchmarks/reliability_long.py [--minutes 15 30 60 120]``; the
table is printed and kept in ``benchmarks/out/reliability_long.md`` (read by
``scripts/reliability_report.py``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import scipy.signal
import soundfile as sf

SAMPLE_RATE = 16_000
BLOCK_S = 60
FLAT_SLACK_MB = 25.0
OUT_FILE = Path(__file__).resolve().parent / "out" / "reliability_long.md"


def write_recording(path: Path, minutes: float, *, seed: int = 20261123) -> None:
    """A steady-noise recording of `minutes`, written block by block (16-bit PCM)."""
    rng = np.random.default_rng(seed)
    b, a = scipy.signal.butter(2, 0.25)
    state = np.zeros(2)
    block = SAMPLE_RATE * BLOCK_S
    with sf.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as out:
        for start in range(0, int(minutes * 60 * SAMPLE_RATE), block):
            t = (start + np.arange(block)) / SAMPLE_RATE
            hiss, state = scipy.signal.lfilter(b, a, rng.standard_normal(block), zi=state)
            tone = np.where((t % 10) < 1, 0.3 * np.sin(2 * np.pi * 440 * t), 0)
            out.write((0.03 * hiss + 0.02 * np.sin(2 * np.pi * 50 * t) + tone).astype(np.float32))


def _anon_and_file_rss(pid: int) -> tuple[int, int]:
    """RssAnon and RssFile of a process, bytes (Linux): heap versus pages of mapped files."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    return fields.get("RssAnon", 0), fields.get("RssFile", 0)


def run_sampled(command: list[str], env: dict[str, str], *, interval: float = 0.1) -> dict[str, float]:
    """Run `command`, sampling RSS of it and its children; returns peaks in MiB and seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak_main = peak_child = peak_tree = peak_anon = peak_file = 0.0
    while process.poll() is None:
        try:
            main = watched.memory_info().rss
            anon, mapped = _anon_and_file_rss(process.pid)
            children = [c.memory_info().rss for c in watched.children(recursive=True)]
        except (psutil.Error, OSError):
            break
        peak_anon, peak_file = max(peak_anon, anon), max(peak_file, mapped)
        peak_main = max(peak_main, main)
        peak_child = max(peak_child, max(children, default=0))
        peak_tree = max(peak_tree, main + sum(children))
        time.sleep(interval)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed ({process.returncode}):\n{err.decode('utf-8', 'replace')[-3000:]}")
    mib = 1024 * 1024
    return {
        "peak_main_mb": peak_main / mib,
        "peak_anon_mb": peak_anon / mib,
        "peak_file_mb": peak_file / mib,
        "peak_ffmpeg_mb": peak_child / mib,
        "peak_tree_mb": peak_tree / mib,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[15.0, 30.0, 60.0, 120.0])
    args = parser.parse_args(argv)

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    rows = []
    with tempfile.TemporaryDirectory(prefix="destatic-long-") as scratch, prefect_test_harness(server_startup_timeout=90):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESTATIC_")}
        env.update({"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        for minutes in args.minutes:
            source = Path(scratch) / f"long-{minutes:g}min.wav"
            print(f"writing {minutes:g} min of 16 kHz mono ...", file=sys.stderr)
            write_recording(source, minutes)
            work = Path(scratch) / f"work-{minutes:g}"
            command = [sys.executable, "-m", "destatic", "run", str(source), "--output", str(Path(scratch) / "out.flac"),
                       "--work", str(work)]
            print(f"destatic run, {minutes:g} min ...", file=sys.stderr)
            figures = run_sampled(command, env)
            rows.append((minutes, figures))
            for path in (source, Path(scratch) / "out.flac"):
                path.unlink(missing_ok=True)
            subprocess.run(["rm", "-rf", str(work)], check=False)

    lines = [
        "Peak RSS of `destatic run` on a 16 kHz mono recording (fresh process, Prefect server not counted)",
        "",
        "| minutes | peak RSS destatic MiB | of which heap (RssAnon) | of which mapped files (RssFile) "
        "| peak RSS ffmpeg MiB | peak RSS total MiB | seconds | realtime factor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for minutes, f in rows:
        lines.append(f"| {minutes:g} | {f['peak_main_mb']:.0f} | {f['peak_anon_mb']:.0f} | {f['peak_file_mb']:.0f} "
                     f"| {f['peak_ffmpeg_mb']:.0f} | {f['peak_tree_mb']:.0f} "
                     f"| {f['seconds']:.0f} | {minutes * 60 / f['seconds']:.0f}x |")
    if len(rows) > 1:
        for label, key in (("peak RSS", "peak_main_mb"), ("peak heap (RssAnon)", "peak_anon_mb")):
            peaks = [f[key] for _, f in rows]
            spread = max(peaks) - min(peaks)
            verdict = "flat" if spread <= FLAT_SLACK_MB else "GROWS"
            lines += ["", f"destatic {label} spread over {[m for m, _ in rows]} min: {spread:.0f} MiB "
                          f"({verdict}; flat means <= {FLAT_SLACK_MB:g} MiB)"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
