"""Extraction + remux of a 10-minute 640x360 h264/aac video: destatic.media against bare ffmpeg.

Generates the video with ffmpeg into a temporary folder (testsrc + tone and
noise, x264 fast preset), then times, alternating the two to share the
machine's load fairly:

- destatic: ``extract_audio`` then ``remux`` (probing, whitelists, atomic
  renames and all);
- bare ffmpeg: the two commands doing the same work (decode the audio to a
  float WAV; copy the video and encode that WAV to aac at the same bitrate).

Prints the median time of each and the ratio. Target: destatic <= 1.3x.
Then the remux alone with the AAC encode split among the usable CPUs
(``n_jobs=None``, the default) against one encoder (``n_jobs=1``) and bare
ffmpeg, and the audio-only m4a export at a few lengths, both ways, which is
where the default's threshold comes from.

Usage: python benchmarks/media_remux.py [--minutes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import soundfile as sf

from destatic import media
from destatic.media import _aac_segments, _ffmpeg


def bare(*args: str | Path) -> None:
    subprocess.run([_ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def generate(path: Path, minutes: float) -> None:
    seconds = str(int(minutes * 60))
    bare(
        "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
        "-f", "lavfi", "-i", "aevalsrc=0.3*sin(2*PI*440*t)+0.05*(random(0)-0.5)|0.3*sin(2*PI*550*t)+0.05*(random(1)-0.5):s=48000",
        "-t", seconds, "-c:v", "libx264", "-preset", "fast", "-c:a", "aac", "-b:a", "192k", path,
    )


def run_destatic(source: Path, work: Path, n_jobs: int | None = None) -> tuple[float, float]:
    """Seconds for destatic's extract and remux."""
    start = time.perf_counter()
    track = media.extract_audio(source, work / "destatic.wav")
    middle = time.perf_counter()
    media.remux(source, track.path, work / "destatic.mp4", n_jobs=n_jobs)
    return middle - start, time.perf_counter() - middle


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_bare(source: Path, work: Path, bitrate: int) -> tuple[float, float]:
    """Seconds for the two bare ffmpeg commands doing the same."""
    start = time.perf_counter()
    bare("-i", source, "-map", "0:a:0", "-c:a", "pcm_f32le", work / "bare.wav")
    middle = time.perf_counter()
    bare("-i", source, "-i", work / "bare.wav", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", str(bitrate), work / "bare.mp4")
    return middle - start, time.perf_counter() - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="destatic-bench-") as scratch:
        work = Path(scratch)
        source = work / "source.mp4"
        started = time.perf_counter()
        generate(source, options.minutes)
        print(f"generated {options.minutes:g} min 640x360 h264/aac ({source.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s")
        run_destatic(source, work)
        chosen = media.probe(work / "destatic.mp4").streams[1].bitrate
        ours, single, theirs = [], [], []
        for _ in range(options.repeats):
            ours.append(run_destatic(source, work))
            single.append(run_destatic(source, work, n_jobs=1))
            theirs.append(run_bare(source, work, chosen))
        same_video = len({_md5(work / name) for name in ("source.mp4", "destatic.mp4", "bare.mp4")}) == 1
        print(f"audio: aac at {chosen // 1000} kb/s in both (destatic's choice, measured); video packets identical: {same_video}")
        print(f"{'step (median of ' + str(options.repeats) + ')':<24}{'destatic s':>12}{'bare ffmpeg s':>15}{'ratio':>8}")
        rows = {
            "extract": ([a for a, _ in ours], [a for a, _ in theirs]),
            "remux": ([b for _, b in ours], [b for _, b in theirs]),
            "extract + remux": ([a + b for a, b in ours], [a + b for a, b in theirs]),
        }
        for step, (mine, base) in rows.items():
            m, b = statistics.median(mine), statistics.median(base)
            print(f"{step:<24}{m:>12.2f}{b:>15.2f}{m / b:>8.2f}")
        total = statistics.median(rows["extract + remux"][0]) / statistics.median(rows["extract + remux"][1])
        print(f"target <= 1.30x for extract + remux: {'met' if total <= 1.3 else 'NOT met'} ({total:.2f}x)")
        jobs = _aac_segments.encoder_jobs(sf.info(work / "destatic.wav").frames, 48000, 2)
        parallel, one, bare_remux = (statistics.median(b for _, b in runs) for runs in (ours, single, theirs))
        print(f"\nremux alone (median of {options.repeats}), {len(os.sched_getaffinity(0))} usable CPUs")
        print(f"{'way':<40}{'s':>8}{'vs bare':>9}")
        for way, seconds in ((f"destatic, {jobs} AAC encoders (default)", parallel), ("destatic, one AAC encoder (n_jobs=1)", one), ("bare ffmpeg", bare_remux)):
            print(f"{way:<40}{seconds:>8.2f}{seconds / bare_remux:>9.2f}")
        print(f"\naudio-only m4a export, 48 kHz stereo (median of {options.repeats})")
        print(f"{'seconds of audio':<18}{'encoders':>9}{'one s':>8}{'split s':>9}{'ratio':>7}")
        for length in (20, 40, 60, 120):
            clip = work / f"clip{length}.wav"
            bare("-i", work / "destatic.wav", "-t", str(length), "-c:a", "pcm_f32le", clip)
            count = max(2, _aac_segments.encoder_jobs(length * 48000, 48000, 2, n_jobs=len(os.sched_getaffinity(0))))
            one_s = statistics.median(timed(lambda: media.export_audio(clip, work / "one.m4a", n_jobs=1)) for _ in range(options.repeats))
            split_s = statistics.median(timed(lambda: media.export_audio(clip, work / "split.m4a", n_jobs=count)) for _ in range(options.repeats))
            print(f"{length:<18}{count:>9}{one_s:>8.2f}{split_s:>9.2f}{split_s / one_s:>7.2f}")


def _md5(path: Path) -> str:
    done = subprocess.run(
        [_ffmpeg.ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:v", "-c", "copy", "-f", "md5", "-"], capture_output=True, check=True
    )
    return done.stdout.decode().strip()


if __name__ == "__main__":
    main()
