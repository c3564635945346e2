"""A/V lag of remuxed audio over generated files of every codec and container remux writes, before and after.

Generates short files with bare ffmpeg (``tests/media/av_sync_checks.py``: a
test pattern and enveloped noise; 32, 44.1 and 48 kHz, mono and stereo,
lengths that are no multiple of any frame size, audio starting with, 0.137 s
after and 0.2 s before the video, H.264 with and without B-frames), then puts
each file's own decoded audio back the way the pipeline does
(``extract_audio`` to a WAV, ``remux`` of that WAV) with two versions of
destatic: the checkout's and one from git (``--before``, default ``main``).
The denoiser between the two steps is sample aligned, so any lag comes from
the media layer.

The lag is the cross-correlation peak of the audio as a player places it
(each decoded frame at its timestamp, relative to the first video frame; the
timeline's zero for audio alone), output against original: positive when the
output's audio plays late. Also printed: how far the whole picture moved on
the timeline (``video shift``), which does not change sync. Real files in
``../shared/media/video`` are added when present.

Usage: python benchmarks/av_sync.py [--quick] [--before REF | --no-before] [--jobs 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "media"))

import av_sync_checks as av  # noqa: E402
from media_checks import MEDIA_DIR  # noqa: E402

TOLERANCE_MS = 1.0

_WORKER = """
import json, sys
from pathlib import Path
import destatic
from destatic import media
jobs = json.loads(sys.stdin.read())
print(json.dumps({"destatic": destatic.__file__}), flush=True)
for source, wav, output in jobs:
    try:
        media.remux(source, media.extract_audio(source, wav).path, output)
        print(json.dumps({"output": output}), flush=True)
    except Exception as error:
        print(json.dumps({"output": output, "error": f"{type(error).__name__}: {error}"[:300]}), flush=True)
"""


def _source_tree(ref: str, into: Path) -> Path:
    """The ``src`` folder of git revision `ref` of this checkout, unpacked under `into`."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(REPO_ROOT), "archive", ref, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _remux_all(src: Path, jobs: list[tuple[str, str, str]], workers: int) -> dict[str, str | None]:
    """Run extract and remux on every (source, wav, output) with the destatic under `src`; error text per output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    shares = [jobs[i::workers] for i in range(workers)]
    processes = [
        subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        for share in shares if share
    ]
    results: dict[str, str | None] = {}
    for process, share in zip(processes, shares, strict=False):
        process.stdin.write(json.dumps(share))
        process.stdin.close()
    for process in processes:
        lines = [json.loads(line) for line in process.stdout]
        process.wait()
        loaded = Path(lines[0]["destatic"]).resolve()
        if not loaded.is_relative_to(src.resolve()):
            sys.exit(f"the worker imported destatic from {loaded}, not from {src}")
        results.update({line["output"]: line.get("error") for line in lines[1:]})
    return results


def _make(args: tuple[av.Case, str, int]) -> str:
    case, folder, seed = args
    return str(av.make_source(case, Path(folder), seed=seed))


def _measure(pair: tuple[str, str]) -> tuple[float, float | None]:
    source, output = pair
    return av.audio_lag(source, output), av.video_shift(source, output)


def _real_files() -> list[Path]:
    folder = MEDIA_DIR / "video"
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one file per codec and container (35) instead of the grid (1028)")
    parser.add_argument("--before", default="main", help="git revision measured as 'before' (default: main)")
    parser.add_argument("--no-before", action="store_true", help="measure the checkout only")
    parser.add_argument("--jobs", type=int, default=2, help="processes at once (default 2)")
    options = parser.parse_args()
    cases = av.fast_grid() if options.quick else list(av.grid())
    versions = {"after": REPO_ROOT / "src"}
    with tempfile.TemporaryDirectory(prefix="destatic-avsync-") as scratch:
        root = Path(scratch)
        if not options.no_before:
            versions = {"before": _source_tree(options.before, root / "before"), **versions}
        started = time.perf_counter()
        with ProcessPoolExecutor(options.jobs) as pool:
            sources = list(pool.map(_make, [(case, scratch, seed) for seed, case in enumerate(cases)]))
        labels = [f"{case.suffix[1:]} {case.codec}" for case in cases]
        for real in _real_files():
            sources.append(str(real))
            labels.append(f"real {real.suffix[1:]} {_probe_codec(real)}")
        print(f"{len(sources)} files ({len(cases)} generated) in {time.perf_counter() - started:.0f} s")
        lags: dict[str, list[tuple[float, float | None] | None]] = {}
        for version, src in versions.items():
            started = time.perf_counter()
            jobs = [(source, str(root / f"{version}-{i}.wav"), str(root / f"{version}-{i}{Path(source).suffix}")) for i, source in enumerate(sources)]
            errors = _remux_all(src, jobs, options.jobs)
            with ProcessPoolExecutor(options.jobs) as pool:
                measured = pool.map(_measure, [(source, output) for source, _, output in jobs if errors.get(output) is None])
                done = iter(measured)
                lags[version] = [None if errors.get(output) is not None else next(done) for _, _, output in jobs]
            for (source, _, output) in jobs:
                if errors.get(output):
                    print(f"{version}: {Path(source).name}: {errors[output]}")
            print(f"{version}: remuxed and measured in {time.perf_counter() - started:.0f} s")
        _print_table(labels, lags)


def _probe_codec(path: Path) -> str:
    from destatic import media

    return media.probe(path).default_audio_stream.codec


def _span(values: list[float], digits: int) -> str:
    return f"{min(values):+.{digits}f} .. {max(values):+.{digits}f}" if values else "-"


def _print_table(labels: list[str], lags: dict[str, list[tuple[float, float | None] | None]]) -> None:
    """One row per container and codec: files, and for each version the lag's range, files out of tolerance
    (or failed) and the range of the video's shift on the timeline."""
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    print(f"\nA/V lag of the remuxed audio against its video, ms (positive: late); out = files beyond +-{TOLERANCE_MS:g} ms or failed")
    header = f"{'container codec':<18}{'files':>6}"
    for version in lags:
        header += f"{version + ' lag':>20}{'out':>5}{'video shift':>18}"
    print(header)
    totals: collections.Counter[str] = collections.Counter()
    for name, members in sorted(groups.items()):
        row = f"{name:<18}{len(members):>6}"
        for version, results in lags.items():
            done = [results[i] for i in members if results[i] is not None]
            ms = [lag * 1000 for lag, _ in done]
            shifts = [shift * 1000 for _, shift in done if shift is not None]
            out = sum(abs(v) > TOLERANCE_MS for v in ms) + len(members) - len(done)
            totals[version] += out
            row += f"{_span(ms, 2):>20}{out:>5}{_span(shifts, 1):>18}"
        print(row)
    print("files beyond the tolerance or failed: " + ", ".join(f"{version} {count}" for version, count in totals.items()))


if __name__ == "__main__":
    main()
