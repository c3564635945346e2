"""Speed benchmark: destatic against ffmpeg ``afftdn`` on the same file in the same run, with the FFT-only floor beside them.

Generates minutes of 48 kHz stereo speech over real noise into a temporary
16-bit WAV (and the float32 WAV the pipeline's extract step would write),
then times, alternating the cases ``--repeat`` times and keeping each one's
median: ``ffmpeg -af afftdn`` file to file; ``destatic.denoise`` in memory
(read, denoise, write, and the call alone); the streaming path
(``soundfile.blocks`` through ``destatic.dsp.denoise_stream`` to a WAV) with
a thread per channel and in one thread; the pipeline's two steps (subtract:
the gains file, inverse: the cleaned WAV); and the floor for any STFT
method: the windowed rfft and irfft of every frame (3072-point, hop 768) in
one thread. Where the learned methods can run, also DeepFilterNet3 alone
(``destatic.dsp.dfn3``: features, graphs, deep filter and resynthesis) on
one channel, as CPU seconds per second of audio (issue 28's target: at most
0.05). Then the first call in a fresh process, with the compiled loops
loaded from a warm on-disk cache, and once from a cold one (compiling).

Targets (issue 14): ``denoise()`` >= 4x afftdn's speed (floor 3x) and
within 2x of the FFT-only floor; streaming file to file >= 3x afftdn; the
first call in a fresh process < 1 s with a warm cache. The load average is
printed before and after: figures taken while other work runs on the machine
are flagged.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import scipy.fft
import soundfile as sf

import common

DEFAULT_METHOD = "logmmse"
TARGETS = {"denoise": 4.0, "denoise_floor": 3.0, "streaming": 3.0, "to_fft_floor": 2.0, "first_call_s": 1.0, "dfn3_cpu": 0.05}
DFN3_LABEL = "DeepFilterNet3 alone (dsp.dfn3), one channel, 48 kHz"
N_FFT, HOP = 3072, 768
FRAMES_PER_CALL = 85
"""Frames per FFT call in the floor: what one 65536-sample block makes."""
BUSY_LOAD = 1.0
"""Load average (of 2 CPUs) above which the figures are flagged as measured under load."""


def cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of this process's threads and its waited-for children (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def timed(run: Callable[[], object]) -> tuple[float, float, float, object]:
    """Wall seconds, user and system CPU seconds (see :func:`cpu_seconds`) and the result."""
    user0, system0 = cpu_seconds()
    wall0 = time.perf_counter()
    result = run()
    wall = time.perf_counter() - wall0
    user1, system1 = cpu_seconds()
    return wall, user1 - user0, system1 - system0, result


def afftdn_file(source: Path, target: Path, options: str) -> None:
    subprocess.run(
        [common.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source), "-af", f"afftdn={options}", str(target)],
        check=True,
    )


PCM16_SCALE = np.float32(32768)
READ_BLOCK = 65536


def pcm16_blocks(path: Path) -> Iterator[np.ndarray]:
    """A 16-bit WAV's blocks as float32 (frames, channels), scaled by 1 / 32768 in numpy (libsndfile's own float read is 4x slower)."""
    for block in sf.blocks(path, blocksize=READ_BLOCK, dtype="int16", always_2d=True):
        samples = block.astype(np.float32)
        samples *= np.float32(1 / 32768)
        yield samples


def as_pcm16(block: np.ndarray) -> np.ndarray:
    """Float samples as int16: times 32768, rounded to nearest and clipped, in numpy (6x faster than libsndfile converting)."""
    scaled = block * PCM16_SCALE
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16)


def streaming_file(source: Path, target: Path, **kwargs: object) -> None:
    """A 16-bit WAV block by block through ``destatic.dsp.denoise_stream`` into a 16-bit WAV."""
    from destatic.dsp import denoise_stream

    info = sf.info(source)
    with sf.SoundFile(target, "w", samplerate=info.samplerate, channels=info.channels, subtype="PCM_16") as out:
        for block in denoise_stream(pcm16_blocks(source), info.samplerate, **kwargs):
            out.write(as_pcm16(block))


def in_memory_file(source: Path, target: Path, **kwargs: object) -> dict[str, float]:
    """Read a whole 16-bit WAV, ``destatic.denoise`` it, write a 16-bit WAV; the seconds of each step."""
    import destatic

    began = time.perf_counter()
    audio = np.concatenate(list(pcm16_blocks(source)))
    read = time.perf_counter()
    output = destatic.denoise(audio, sf.info(source).samplerate, **kwargs)
    computed = time.perf_counter()
    sf.write(target, as_pcm16(output), sf.info(source).samplerate, subtype="PCM_16")
    return {"read": read - began, "denoise": computed - read, "write": time.perf_counter() - computed}


def fft_floor(channels: list[np.ndarray]) -> None:
    """Window every frame of every channel (each a contiguous array), rfft and irfft it: 85 frames per call, one thread, no gains.

    The transforms write into buffers kept from call to call (pocketfft's
    own ``out``, which scipy.fft does not pass on) so that the floor pays no
    page faults for fresh output arrays (with per-call arrays it took 1.9 x
    as long here, most of it in the kernel); falls back to scipy.fft.
    """
    try:
        from scipy.fft._pocketfft import pypocketfft  # noqa: PLC0415  (scipy's private module)
    except ImportError:
        pypocketfft = None
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    buffer = np.empty((FRAMES_PER_CALL, N_FFT), np.float32)
    spectra = np.empty((FRAMES_PER_CALL, N_FFT // 2 + 1), np.complex64)
    back = np.empty((FRAMES_PER_CALL, N_FFT), np.float32)
    for samples in channels:
        frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP]
        for start in range(0, frames.shape[0], FRAMES_PER_CALL):
            part = frames[start : start + FRAMES_PER_CALL]
            count = part.shape[0]
            windowed = np.multiply(part, window, out=buffer[:count])
            if pypocketfft is None or count < FRAMES_PER_CALL:
                scipy.fft.irfft(scipy.fft.rfft(windowed, axis=-1), n=N_FFT, axis=-1)
            else:
                pypocketfft.r2c(windowed, (1,), True, 0, spectra, 1)
                pypocketfft.c2r(spectra, (1,), N_FFT, False, 2, back, 1)


def dfn3_channel(samples: np.ndarray) -> None:
    """DeepFilterNet3 on one 48 kHz channel through the engine the learned methods use."""
    from destatic.dsp import dfn3

    stream = dfn3.Dfn3Stream()
    stream.process(samples[: samples.size - samples.size % dfn3.FRAME])
    stream.flush()


def pipeline_steps(source: Path, target: Path, gains: Path, method: str) -> None:
    """The subtract and inverse steps as the pipeline runs them: a float32 WAV in, the gains file between, a float32 WAV out."""
    from destatic import dsp, media

    info = sf.info(source)
    channels, rate, frames = info.channels, info.samplerate, info.frames
    profile = dsp.profile_from_blocks(media.wav_blocks(source), rate, start_s=0.0, end_s=1.0)
    shape = dsp.gain_shape(frames, profile)
    jobs = dsp.jobs_for_length(frames, rate)
    with open(gains, "w+b") as out:
        writer = dsp.GainFileWriter(out, shape, dsp.gain_dtype(method))
        for _ in dsp.compute_gains_by_group(
            lambda group: media.wav_blocks(source, group), channels, rate, profile, writer.store, method=method, n_jobs=jobs
        ):
            pass
    cleaned = dsp.apply_gains_by_group(
        lambda group: media.wav_blocks(source, group),
        lambda group: dsp.read_gain_rows(gains, group),
        channels,
        rate,
        profile=profile,
        n_jobs=jobs,
    )
    with media.float_wav_writer(target, rate, channels) as handle:
        for block in cleaned:
            handle.write(block)


FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np, destatic
imported = time.perf_counter()
audio = (0.1 * np.random.default_rng(0).standard_normal((48000, 2))).astype(np.float32)
destatic.denoise(audio, 48000, noise=(0.0, 0.5), method={method!r})
called = time.perf_counter()
destatic.denoise(audio, 48000, noise=(0.0, 0.5), method={method!r})
print(imported - t0, called - imported, time.perf_counter() - called)
"""


def first_call(method: str, cache: str | None) -> tuple[float, float, float]:
    """A fresh process: ``import destatic``, then the first and a second ``denoise`` of 1 s of 48 kHz stereo."""
    env = dict(os.environ)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CALL.format(method=method)], capture_output=True, text=True, check=True, env=env
    )
    imported, first, second = (float(value) for value in done.stdout.split())
    return imported, first, second


def load() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the test file (default 10)")
    parser.add_argument("--repeat", type=int, default=5, help="alternated runs of every case; the median counts (default 5)")
    parser.add_argument("--method", default=DEFAULT_METHOD, help=f"destatic method (default {DEFAULT_METHOD}, passed explicitly)")
    parser.add_argument("--afftdn", default="nr=24:nf=-30", help="afftdn options (default nr=24:nf=-30)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the first call with an empty compile cache")
    args = parser.parse_args(argv)
    common.require_media()
    import destatic
    import destatic.dsp

    loads = [load()]
    method = args.method
    with tempfile.TemporaryDirectory(prefix="destatic-speed-") as tmp:
        folder = Path(tmp)
        source = folder / "speech_noise.wav"
        extracted = folder / "extracted.wav"
        print(f"writing {args.minutes:g} min of 48 kHz stereo speech+noise to {source} ...", file=sys.stderr)
        common.write_speech_noise_wav(source, args.minutes)
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
        sf.write(extracted, audio, rate, subtype="FLOAT")
        columns = [np.ascontiguousarray(audio[:, channel]) for channel in range(audio.shape[1])]
        destatic.denoise(audio[: 40 * rate], rate, noise=(0, 1), method=method)  # load (or compile) the loops first
        cases: dict[str, Callable[[], object]] = {
            "ffmpeg afftdn": lambda: afftdn_file(source, folder / "afftdn.wav", args.afftdn),
            "destatic.denoise (in memory, file to file)": lambda: in_memory_file(
                source, folder / "memory.wav", noise=(0, 1), method=method
            ),
            "streaming file to file, a thread per channel": lambda: streaming_file(
                source, folder / "stream.wav", noise=(0, 1), method=method, n_jobs=None
            ),
            "streaming file to file, one thread": lambda: streaming_file(
                source, folder / "stream-1.wav", noise=(0, 1), method=method, n_jobs=1
            ),
            "pipeline steps: subtract + inverse (float WAV, gains file)": lambda: pipeline_steps(
                extracted, folder / "cleaned.wav", folder / "gains.npy", method
            ),
            "FFT-only floor: windowed rfft + irfft, one thread": lambda: fft_floor(columns),
        }
        if destatic.dsp.learned_available() and rate == 48_000:
            dfn3_channel(columns[0][: 10 * rate])  # load the model and warm its sessions first
            cases[DFN3_LABEL] = lambda: dfn3_channel(columns[0])
        walls: dict[str, list[float]] = {label: [] for label in cases}
        cpus: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
        calls: list[float] = []
        for attempt in range(args.repeat):
            for label, run in cases.items():
                print(f"run {attempt + 1}: {label} ...", file=sys.stderr)
                wall, user, system, result = timed(run)
                walls[label].append(wall)
                cpus[label].append((user, system))
                if isinstance(result, dict):
                    calls.append(result["denoise"])
            loads.append(load())
        starts = [first_call(method, None) for _ in range(max(3, args.repeat))]
        cold = None if args.no_cold_start else first_call(method, str(folder / "empty-cache"))
    loads.append(load())

    median = {label: statistics.median(values) for label, values in walls.items()}
    median_cpu = {
        label: (statistics.median(user for user, _ in values), statistics.median(system for _, system in values))
        for label, values in cpus.items()
    }
    median["  of which the denoise() call alone"] = statistics.median(calls)
    reference = median["ffmpeg afftdn"]
    floor = median["FFT-only floor: windowed rfft + irfft, one thread"]
    busy = max(loads) > BUSY_LOAD
    print(f"\n{args.minutes:g} min of 48 kHz stereo (16-bit WAV), method={method!r}, noise=(0, 1); "
          f"median of {args.repeat} alternated runs; {os.cpu_count()} CPUs")
    print(f"load average (1 min) before, between rounds and after: {', '.join(f'{value:.2f}' for value in loads)}"
          + ("  ** MEASURED UNDER LOAD: absolute times are inflated; compare the ratios **" if busy else ""))
    print("\n| case | wall s (median) | runs | CPU s: user + system | afftdn wall / this | this / FFT floor |")
    print("|---|---|---|---|---|---|")
    for label, wall in median.items():
        runs = walls.get(label, calls)
        cpu = "%.2f + %.2f" % median_cpu[label] if label in median_cpu else "-"
        print(f"| {label} | {wall:.2f} | {min(runs):.2f}-{max(runs):.2f} | {cpu} | {reference / wall:.2f} | {wall / floor:.2f} |")
    imported, first, second = (statistics.median(values) for values in zip(*starts))
    print(f"\nfirst call in a fresh process, warm compile cache (median of {len(starts)}): import destatic {imported:.2f} s, "
          f"first denoise() of 1 s stereo {first:.2f} s (a second one {second:.3f} s)")
    if cold is not None:
        print(f"the same with an empty compile cache (compiling): first denoise() {cold[1]:.1f} s")
    verdicts = [
        ("denoise() call alone vs afftdn", reference / median["  of which the denoise() call alone"], TARGETS["denoise"], ">="),
        ("streaming file to file (a thread per channel) vs afftdn", reference / median["streaming file to file, a thread per channel"], TARGETS["streaming"], ">="),
        ("pipeline steps vs afftdn", reference / median["pipeline steps: subtract + inverse (float WAV, gains file)"], TARGETS["streaming"], ">="),
        ("denoise() call alone / FFT-only floor", median["  of which the denoise() call alone"] / floor, TARGETS["to_fft_floor"], "<="),
        ("first call, warm cache (s)", first, TARGETS["first_call_s"], "<"),
    ]
    if DFN3_LABEL in median_cpu:
        seconds = len(columns[0]) / rate
        verdicts.append(("DeepFilterNet3 CPU-s per second of audio per channel", sum(median_cpu[DFN3_LABEL]) / seconds, TARGETS["dfn3_cpu"], "<="))
    print()
    for label, value, target, sense in verdicts:
        met = value >= target if sense == ">=" else value <= target if sense == "<=" else value < target
        print(f"{label}: {value:.2f} ({'meets' if met else 'MISSES'} {sense} {target:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
