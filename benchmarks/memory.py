"""Memory benchmark: peak RSS of destatic on long 48 kHz stereo files.

Each case runs in a fresh Python process that reports its own peak resident
set size (``VmHWM``), so cases do not inherit each other's memory. The
streaming case reads a 16-bit WAV block by block (``soundfile.blocks``),
denoises through ``destatic.dsp.denoise_stream`` and writes a WAV; the
in-memory case (for information) reads the whole file and calls
``destatic.denoise``. Target: streaming <= 250 MB at 60 minutes and about the
same at 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TARGET_MB = 250.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Read from ``VmHWM`` in ``/proc/self/status`` where it exists: Linux keeps
    ``ru_maxrss`` across ``execve``, so a fresh child would report its parent's
    peak at spawn time instead of its own.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, source: Path, target: Path, method: str | None) -> None:
    """Run one case in this (fresh) process and print its figures as JSON."""
    import destatic.dsp  # noqa: F401  (counted in the baseline, not in the run)

    baseline = peak_rss_mb()
    began = time.perf_counter()
    if mode == "streaming":
        common.denoise_file_streaming(source, target, method=method)
    else:
        common.denoise_file_in_memory(source, target, method=method)
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - began}))


def measure(mode: str, source: Path, target: Path, method: str | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--input", str(source), "--output", str(target)]
    if method is not None:
        command += ["--method", method]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[10.0, 60.0], help="streaming cases (default 10 60)")
    parser.add_argument(
        "--in-memory-minutes", type=float, nargs="*", default=[10.0], help="in-memory cases, for information (default 10)"
    )
    parser.add_argument("--method", default=None, help="destatic method (default: destatic's default)")
    parser.add_argument("--child", choices=("streaming", "in-memory"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.input, args.output, args.method)
        return 0
    common.require_media()

    results = []
    with tempfile.TemporaryDirectory(prefix="destatic-memory-") as tmp:
        cases = [("streaming", m) for m in args.minutes] + [("in-memory", m) for m in args.in_memory_minutes]
        for minutes in sorted({m for _, m in cases}):
            source = Path(tmp) / f"speech_noise_{minutes:g}min.wav"
            print(f"writing {minutes:g} min of 48 kHz stereo speech+noise ...", file=sys.stderr)
            common.write_speech_noise_wav(source, minutes)
            for mode, _ in [case for case in cases if case[1] == minutes]:
                print(f"{mode}, {minutes:g} min ...", file=sys.stderr)
                figures = measure(mode, source, Path(tmp) / "out.wav", args.method)
                results.append((mode, minutes, figures))
            source.unlink()

    print("\nPeak RSS of a fresh process denoising 48 kHz stereo (16-bit WAV in and out)\n")
    print("| path | minutes | peak RSS MiB | after imports MiB | seconds | realtime factor |")
    print("|---|---|---|---|---|---|")
    for mode, minutes, f in results:
        print(
            f"| {mode} | {minutes:g} | {f['peak_mb']:.0f} | {f['baseline_mb']:.0f} | {f['seconds']:.1f} "
            f"| {minutes * 60 / f['seconds']:.0f}x |"
        )
    streaming = {minutes: f["peak_mb"] for mode, minutes, f in results if mode == "streaming"}
    if streaming:
        longest = max(streaming)
        verdict = "meets" if streaming[longest] <= TARGET_MB else "MISSES"
        print(f"streaming at {longest:g} min: {streaming[longest]:.0f} MB, {verdict} the target <= {TARGET_MB:g} MB (read as MiB)")
        if len(streaming) > 1:
            spread = max(streaming.values()) - min(streaming.values())
            print(f"streaming peak spread over {sorted(streaming)} min: {spread:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
